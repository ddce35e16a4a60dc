// Command keygate is API-key authentication and authorization for services
// behind Envoy, Istio, nginx, Caddy or Traefik: `keygate serve` answers the
// proxies, `keygate keys …` and the admin API manage keys, `keygate dev`
// runs it all locally. See the README for the commands and their flags.
//
// This package only parses flags and wires the others together: main
// calls run(ctx, args, getenv, stdout, stderr), which tests call too.
// serve takes four steps: check (its flags into a serveConfig, config.go),
// build (every part, and the listeners, server.go; the database's part in
// storage.go), run, and close. Errors reach the user as one line on
// stderr, with exit status 2 for bad usage or input (nothing was done) and
// 1 for any other failure.
package main
