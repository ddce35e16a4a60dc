// Package tlsfiles serves TLS from certificate files that change while the
// process runs: a certificate and its key, and optionally the CA bundle
// that client certificates must chain to (mutual TLS).
//
// Files are read once by Load, which fails on anything unusable, and then
// checked again on a handshake at most once per CheckInterval: when a
// file's size or modification time changed (a renewal, or Kubernetes
// swapping a mounted Secret's symlink), it is read again and the new
// certificate serves the next handshakes. A file that fails to load at
// that point is logged once per change and the previous certificate keeps
// serving, so a half-written renewal never takes a listener down.
//
// # Errors
//
// Load returns an error naming the file and what is wrong with it. After
// Load, nothing fails: reload errors are logged and counted.
package tlsfiles
