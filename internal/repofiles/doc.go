// Package repofiles lists the files the repository ships, for the tests
// that check every one of them (duplicate YAML keys, Envoy access logs).
package repofiles
