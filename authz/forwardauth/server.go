package forwardauth

import (
	"log"
	"net/http"
	"time"
)

// The timeouts of the HTTP listener forward-auth requests arrive on
// (NewServer).
const (
	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's headers.
	ReadHeaderTimeout = 5 * time.Second
	// IdleTimeout closes a keep-alive connection that has carried no
	// request for this long, as the admin listener does: neither a proxy's
	// pool nor a client that went away holds a connection, its goroutine
	// and its buffers, forever. A proxy that keeps connections to keygate
	// should close its idle ones sooner (envoy/envoy-http.yaml: 60 s), so
	// that it never sends a request on a connection keygate is closing.
	IdleTimeout = 2 * time.Minute
)

// NewServer returns the http.Server of a listener that serves handler (a
// Handler, in front of whatever else the listener serves), with the
// timeouts above. errorLog, if not nil, receives net/http's own errors.
func NewServer(handler http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{Handler: handler, ReadHeaderTimeout: ReadHeaderTimeout, IdleTimeout: IdleTimeout, ErrorLog: errorLog}
}
