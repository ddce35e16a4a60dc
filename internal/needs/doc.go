// Package needs is how a test says it needs a program that may not be
// installed (PostgreSQL's server, nginx, Caddy, Chromium, promtool…): on a
// developer's machine without it the test is skipped with one line naming
// the program and how to install it; in CI (CI=true), where .ci/run
// installs everything the tests drive, its absence fails the test instead,
// so that nothing CI can install is ever skipped there.
//
//	bin := needs.Program(t, "caddy", "apt-get install caddy")
package needs
