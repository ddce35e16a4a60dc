package tlsfiles

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/certtest"
)

// handshake connects a TLS client (with client, if set) to a listener
// serving f and returns the serial number the server presented.
func handshake(t *testing.T, f *Files, auth ClientAuth, ca *certtest.CA, client *certtest.Pair) (int64, error) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", f.ServerConfig(auth))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	cfg := ca.ClientConfig(t, client)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	// With TLS 1.3 a refused client certificate shows on the first read.
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != nil && !strings.Contains(err.Error(), "EOF") && !isTimeout(err) {
		return 0, err
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestReloadsChangedFiles(t *testing.T) {
	ca := certtest.NewCA(t, "test")
	first := ca.Server(t, "server")
	f, err := Load(first.CertFile, first.KeyFile, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	f.now = func() time.Time { return clock }
	if serial, err := handshake(t, f, RequireClientCert, ca, nil); err != nil || serial != first.Serial {
		t.Fatalf("first handshake: serial %d, %v; want %d", serial, err, first.Serial)
	}
	renewed := ca.Server(t, "server")
	renewed.Install(t, first)
	// Within CheckInterval nothing is looked at.
	if serial, _ := handshake(t, f, RequireClientCert, ca, nil); serial != first.Serial {
		t.Fatalf("reloaded before CheckInterval passed: serial %d", serial)
	}
	clock = clock.Add(CheckInterval)
	if serial, err := handshake(t, f, RequireClientCert, ca, nil); err != nil || serial != renewed.Serial {
		t.Fatalf("after renewal: serial %d, %v; want %d", serial, err, renewed.Serial)
	}
	if f.Reloads.Load() != 1 {
		t.Fatalf("%d reloads, want 1", f.Reloads.Load())
	}

	// A broken renewal keeps the last good certificate.
	if err := os.WriteFile(first.KeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(CheckInterval)
	for range 2 {
		if serial, err := handshake(t, f, RequireClientCert, ca, nil); err != nil || serial != renewed.Serial {
			t.Fatalf("after a broken renewal: serial %d, %v; want the previous %d", serial, err, renewed.Serial)
		}
		clock = clock.Add(CheckInterval)
	}
	if f.Failures.Load() != 1 {
		t.Fatalf("%d failures counted, want 1 (logged once per change)", f.Failures.Load())
	}
}

func TestMutualTLS(t *testing.T) {
	ca := certtest.NewCA(t, "mesh")
	other := certtest.NewCA(t, "other")
	server := ca.Server(t, "keygate")
	f, err := Load(server.CertFile, server.KeyFile, ca.CertFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !f.MutualTLS() {
		t.Fatal("MutualTLS false with a client CA")
	}
	good := ca.Client(t, "envoy")
	if _, err := handshake(t, f, RequireClientCert, ca, &good); err != nil {
		t.Fatalf("a client certificate from the CA was refused: %v", err)
	}
	if _, err := handshake(t, f, RequireClientCert, ca, nil); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	stranger := other.Client(t, "stranger")
	if _, err := handshake(t, f, RequireClientCert, ca, &stranger); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	// A listener that leaves the choice to its handler takes clients
	// without a certificate (the handler sees no verified chain).
	if _, err := handshake(t, f, VerifyClientCertIfGiven, ca, nil); err != nil {
		t.Fatalf("VerifyClientCertIfGiven refused a client without a certificate: %v", err)
	}
	if _, err := handshake(t, f, NoClientCert, ca, nil); err != nil {
		t.Fatalf("NoClientCert refused a client: %v", err)
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	ca := certtest.NewCA(t, "test")
	p := ca.Server(t, "server")
	q := ca.Server(t, "other")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("hello"), 0o600)
	cases := map[string][3]string{
		"missing key file":     {p.CertFile, "", ""},
		"no such file":         {p.CertFile + ".nope", p.KeyFile, ""},
		"key of another cert":  {p.CertFile, q.KeyFile, ""},
		"CA file without PEM":  {p.CertFile, p.KeyFile, garbage},
		"CA file that is gone": {p.CertFile, p.KeyFile, garbage + ".nope"},
	}
	for name, c := range cases {
		if _, err := Load(c[0], c[1], c[2], nil); err == nil {
			t.Errorf("%s: Load accepted it", name)
		}
	}
}
