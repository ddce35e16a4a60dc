//go:build keygate_pprof

package main

import (
	"log"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

// A keygate built with -tags keygate_pprof serves Go's profiles on
// PPROF_ADDR (for example 127.0.0.1:6060), for profiling a running server
// under keygate-bench:
//
//	go build -tags keygate_pprof -o /tmp/keygate ./cmd/keygate
//	PPROF_ADDR=127.0.0.1:6060 go run ./cmd/keygate-bench --keygate-bin /tmp/keygate --mode cached
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=10
//
// Release builds carry no profiling endpoint: the tag is off by default.
func init() {
	addr := os.Getenv("PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() { log.Print(http.ListenAndServe(addr, nil)) }()
}
