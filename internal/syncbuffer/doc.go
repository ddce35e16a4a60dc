// Package syncbuffer is a bytes.Buffer safe for concurrent use, for tests
// that read a server's logs while it writes them.
package syncbuffer
