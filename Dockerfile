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
# Release builds pass --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD),
# which also fill the OCI labels.

# The toolchain is go.mod's (a test in deploy/ keeps the two equal).
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when go.mod or go.sum change,
# not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
ARG TARGETOS
ARG TARGETARCH
# The version and commit stamped into the binary (`keygate version`,
# keygate_build_info): from the build arguments, or else from .git, which
# is in the build context for this (Go's own VCS stamp would call the tree
# modified: .dockerignore leaves files out).
ARG VERSION=""
ARG COMMIT=""
# CGO off: a static binary for a base image without libc. -trimpath drops
# local paths from the binary; -s -w drop the symbol table and DWARF.
RUN --mount=type=cache,target=/root/.cache/go-build \
    version="${VERSION:-$(git describe --tags --always 2>/dev/null || echo dev)}" && \
    commit="${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}" && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags="-s -w -X main.version=${version} -X main.commit=${commit}" \
      -o /out/keygate ./cmd/keygate && \
    echo "${commit}" > /out/commit

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=""
ARG COMMIT=""
LABEL org.opencontainers.image.title="keygate" \
      org.opencontainers.image.description="API-key authentication and authorization for services behind Envoy, Istio, nginx, Caddy or Traefik" \
      org.opencontainers.image.source="https://github.com/keygate/keygate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/keygate /keygate
USER nonroot:nonroot
# 9001: ext_authz gRPC (Check v3), grpc.health.v1, reflection (--reflection).
# 9002: HTTP forward-auth, /healthz, /readyz, /metrics.
# 9003: admin API and console (127.0.0.1 unless --admin-addr says otherwise).
EXPOSE 9001 9002
# `keygate health` asks the gRPC health service; no shell or curl needed.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["/keygate", "health"]
ENTRYPOINT ["/keygate"]
CMD ["serve"]
