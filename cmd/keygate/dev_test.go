package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestDevFromScratch runs `keygate dev` as a new user would, with no
// database configured, and runs the grpcurl commands it prints (their JSON
// payloads, through a real gRPC client): the first must be allowed, the
// second denied with 403.
func TestDevFromScratch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
			func(string) string { return "" }, out, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev returned %v after Ctrl-C, want nil", err)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("dev did not come up:\n%s", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("dev exited: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cmds := regexp.MustCompile(`grpcurl -plaintext -d '([^']*)' (\S+) envoy\.service\.auth\.v3\.Authorization/Check`).
		FindAllStringSubmatch(out.String(), -1)
	if len(cmds) != 2 {
		t.Fatalf("want two grpcurl commands in the guide, got %d:\n%s", len(cmds), out.String())
	}
	conn, err := grpc.NewClient(cmds[0][2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, want := range []int32{0, 7} {
		var req authv3.CheckRequest
		if err := protojson.Unmarshal([]byte(cmds[i][1]), &req); err != nil {
			t.Fatalf("command %d: the -d payload is not a CheckRequest: %v", i, err)
		}
		resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &req)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetStatus().GetCode(); got != want {
			t.Fatalf("command %d: status %d, want %d", i, got, want)
		}
	}

	// The curl commands for /auth, run as net/http requests.
	curls := regexp.MustCompile(`curl -si (\S+)((?: -H '[^']*')+)`).FindAllStringSubmatch(out.String(), -1)
	if len(curls) != 2 {
		t.Fatalf("want two curl commands for /auth in the guide, got %d:\n%s", len(curls), out.String())
	}
	for i, want := range []int{200, 403} {
		req, err := http.NewRequest("GET", curls[i][1], nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range regexp.MustCompile(`-H '([^:]+): ([^']*)'`).FindAllStringSubmatch(curls[i][2], -1) {
			req.Header.Set(h[1], h[2])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || want == 200 && resp.Header.Get("X-Keygate-Account-Id") != "demo" {
			t.Fatalf("curl command %d: %d %v, want %d", i, resp.StatusCode, resp.Header, want)
		}
	}
	checkDevConsole(t, out.String())
}
