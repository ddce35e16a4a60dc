package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keygate/keygate/internal/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// result is what one run of the command printed and returned.
type result struct {
	stdout, stderr string
	code           int
	database       string // the database a writing command named, on stderr
}

// neverDialled returns the URL of a database that the test fails if
// anything connects to: for commands that must refuse their flags before
// any I/O. Its server is a listener that closes every connection at once,
// so a client that did connect learns so at once too.
func neverDialled(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		if n := dials.Load(); n > 0 {
			t.Errorf("the database was dialled %d times: the flags must be checked before any I/O", n)
		}
	})
	return "postgres://keygate@" + ln.Addr().String() + "/none?connect_timeout=3"
}

// runCLI runs keygate with args against the database at dbURL and an
// otherwise empty environment.
func runCLI(t *testing.T, dbURL string, args ...string) result {
	t.Helper()
	env := map[string]string{"DATABASE_URL": dbURL, "USER": "tester"}
	return runWithEnv(t, env, args...)
}

func runWithEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	// A command that writes names its database first (on stderr): kept
	// apart, so that the tests of its other output see that alone.
	if first, rest, ok := strings.Cut(r.stderr, "\n"); ok && strings.HasPrefix(first, "database: ") {
		r.database, r.stderr = strings.TrimPrefix(first, "database: "), rest
	}
	if err != nil {
		var errOut bytes.Buffer
		r.code = exitCodeTo(err, &errOut)
		r.stderr += errOut.String()
	}
	return r
}

// mustRun runs keygate and fails the test unless it succeeds.
func mustRun(t *testing.T, dbURL string, args ...string) string {
	t.Helper()
	r := runCLI(t, dbURL, args...)
	if r.code != 0 {
		t.Fatalf("keygate %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not the documented JSON: %v\n%s", err, s)
	}
	return v
}
