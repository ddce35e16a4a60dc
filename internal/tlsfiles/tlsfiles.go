package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CheckInterval is the least time between two looks at the files.
const CheckInterval = time.Second

// Files is a server TLS configuration read from files. It is safe for
// concurrent use.
type Files struct {
	certFile, keyFile, caFile string
	logger                    *slog.Logger
	now                       func() time.Time

	current atomic.Pointer[state]
	mu      sync.Mutex // one reload at a time
	// Reloads counts successful reloads; Failures failed ones.
	Reloads, Failures atomic.Uint64
}

// ClientAuth is what a listener asks of clients when a client CA is
// configured (without one, no listener asks for a client certificate).
type ClientAuth int

// The client authentication modes.
const (
	// RequireClientCert: every client presents a certificate the CA signed.
	RequireClientCert ClientAuth = iota
	// VerifyClientCertIfGiven: a client may present one (and it is then
	// verified); the handler decides which requests need it.
	VerifyClientCertIfGiven
	// NoClientCert: no client certificate is asked for.
	NoClientCert
	numClientAuth
)

// state is what was loaded, with the file stamps it was loaded from.
type state struct {
	configs   [numClientAuth]*tls.Config
	stamps    [3]stamp
	checkedAt time.Time
	failed    [3]stamp // stamps of the last failed attempt, so it is logged once
}

type stamp struct {
	size    int64
	modTime time.Time
}

// Load reads certFile and keyFile (PEM), and caFile when it is not empty:
// then every client must present a certificate that chains to it. logger
// (nil: discard) learns of reloads.
func Load(certFile, keyFile, caFile string, logger *slog.Logger) (*Files, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("a certificate needs both a certificate file and a key file")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Files{certFile: certFile, keyFile: keyFile, caFile: caFile, logger: logger, now: time.Now}
	st, err := f.load()
	if err != nil {
		return nil, err
	}
	f.current.Store(st)
	return f, nil
}

// ServerConfig is the tls.Config for a listener that asks clients what
// auth says: every handshake gets the files' current configuration.
func (f *Files) ServerConfig(auth ClientAuth) *tls.Config {
	if auth < 0 || auth >= numClientAuth {
		auth = RequireClientCert
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.config().configs[auth], nil
		},
	}
}

// MutualTLS reports whether clients must present a certificate.
func (f *Files) MutualTLS() bool { return f.caFile != "" }

// config returns the current configuration, reloading it first if the
// files changed.
func (f *Files) config() *state {
	st := f.current.Load()
	now := f.now()
	if now.Sub(st.checkedAt) < CheckInterval {
		return st
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st = f.current.Load()
	if now.Sub(st.checkedAt) < CheckInterval {
		return st
	}
	next := *st
	next.checkedAt = now
	stamps, err := f.stamps()
	switch {
	case err != nil:
		if stamps != st.failed {
			f.logger.Error("TLS files unreadable; serving the previous certificate", "error", err)
			f.Failures.Add(1)
		}
		next.failed = stamps
	case stamps != st.stamps && stamps != st.failed:
		loaded, err := f.load()
		if err != nil {
			f.logger.Error("TLS files changed but cannot be loaded; serving the previous certificate", "error", err)
			f.Failures.Add(1)
			next.failed = stamps
			break
		}
		loaded.checkedAt = now
		next = *loaded
		f.Reloads.Add(1)
		f.logger.Info("TLS files reloaded", "cert_file", f.certFile, "not_after", notAfter(loaded.configs[NoClientCert]))
	}
	f.current.Store(&next)
	return &next
}

// load reads the files into a configuration.
func (f *Files) load() (*state, error) {
	stamps, err := f.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %v", f.certFile, f.keyFile, err)
	}
	st := &state{stamps: stamps, checkedAt: f.now()}
	var pool *x509.CertPool
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, err
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in it", f.caFile)
		}
	}
	for auth, mode := range [numClientAuth]tls.ClientAuthType{
		RequireClientCert: tls.RequireAndVerifyClientCert, VerifyClientCertIfGiven: tls.VerifyClientCertIfGiven, NoClientCert: tls.NoClientCert,
	} {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		if pool != nil && mode != tls.NoClientCert {
			cfg.ClientCAs, cfg.ClientAuth = pool, mode
		}
		st.configs[auth] = cfg
	}
	return st, nil
}

// stamps are the size and modification time of each file (following
// symlinks, as a mounted Secret's are).
func (f *Files) stamps() ([3]stamp, error) {
	var out [3]stamp
	for i, name := range [3]string{f.certFile, f.keyFile, f.caFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return out, err
		}
		out[i] = stamp{fi.Size(), fi.ModTime()}
	}
	return out, nil
}

func notAfter(cfg *tls.Config) string {
	if len(cfg.Certificates) == 0 {
		return ""
	}
	leaf := cfg.Certificates[0].Leaf
	if leaf == nil {
		return ""
	}
	return leaf.NotAfter.UTC().Format(time.RFC3339)
}
