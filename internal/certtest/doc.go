// Package certtest issues throwaway certificates for tests of TLS and
// mutual TLS: a CA, and server or client certificates signed by it, as PEM
// files in a test's temporary directory.
package certtest
