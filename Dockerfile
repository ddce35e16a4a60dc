# keygate container image.
#
#   docker build -t keygate .
#   docker run --rm keygate version
#
# Two stages: the Go toolchain builds a static binary, and the final image is
# distroless (no shell, no package manager) running as the unprivileged
# `nonroot` user (uid 65532). The default command is `serve`; `migrate` and
# `keys …` run from the same image, e.g. `docker run --rm -e DATABASE_URL=… keygate migrate`.
#
# Multi-architecture: `docker buildx build --platform linux/amd64,linux/arm64 .`
# cross-compiles on the build machine's own architecture (no emulation).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when go.mod or go.sum change,
# not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
ARG TARGETOS
ARG TARGETARCH
# CGO off: a static binary for a base image without libc. -trimpath drops
# local paths from the binary; -s -w drop the symbol table and DWARF.
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/keygate ./cmd/keygate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keygate /keygate
USER nonroot:nonroot
# 9001: ext_authz gRPC (Check v3), grpc.health.v1, reflection.
# 9002: HTTP forward-auth, /healthz, /readyz, /metrics.
EXPOSE 9001 9002
ENTRYPOINT ["/keygate"]
CMD ["serve"]
