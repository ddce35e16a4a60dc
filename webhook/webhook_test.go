package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/hooktest"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/webhook"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// TestSignVectors signs the Standard Webhooks libraries' test vectors
// (copied as data into testdata) and checks each signature.
func TestSignVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/standard-webhooks-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct {
		Secret, MsgID, Payload, Signature string
		Timestamp                         int64
	}
	if err := json.Unmarshal(b, &vectors); err != nil {
		t.Fatal(err)
	}
	var fixed []struct {
		MsgID string `json:"msg_id"`
	}
	json.Unmarshal(b, &fixed)
	if len(vectors) < 2 {
		t.Fatal("no vectors")
	}
	for i, v := range vectors {
		got, err := webhook.Sign([]keystore.SigningSecret{keystore.SigningSecret(v.Secret)}, fixed[i].MsgID, time.Unix(v.Timestamp, 0), []byte(v.Payload))
		if err != nil || got != v.Signature {
			t.Errorf("vector %d: Sign = %q, %v; want %q", i, got, err, v.Signature)
		}
		h := http.Header{}
		h.Set(webhook.HeaderID, fixed[i].MsgID)
		h.Set(webhook.HeaderTimestamp, jsonNumber(v.Timestamp))
		h.Set(webhook.HeaderSignature, "v1,bm90IGl0 "+v.Signature)
		if err := webhook.Verify(keystore.SigningSecret(v.Secret), h, []byte(v.Payload), time.Unix(v.Timestamp, 0), 5*time.Minute); err != nil {
			t.Errorf("vector %d: Verify: %v", i, err)
		}
		if err := webhook.Verify(keystore.SigningSecret(v.Secret), h, []byte(v.Payload+" "), time.Unix(v.Timestamp, 0), 5*time.Minute); !errors.Is(err, webhook.ErrNoSignature) {
			t.Errorf("vector %d: a changed body verified: %v", i, err)
		}
		if err := webhook.Verify(keystore.SigningSecret(v.Secret), h, []byte(v.Payload), time.Unix(v.Timestamp+301, 0), 5*time.Minute); !errors.Is(err, webhook.ErrTimestamp) {
			t.Errorf("vector %d: an old timestamp verified: %v", i, err)
		}
	}
	// Two secrets (a rotation's overlap): two signatures, each verifies.
	a, _ := keystore.NewSigningSecret()
	b2, _ := keystore.NewSigningSecret()
	sig, err := webhook.Sign([]keystore.SigningSecret{a, b2}, "evt_1", time.Unix(1, 0), []byte("{}"))
	if err != nil || strings.Count(sig, "v1,") != 2 {
		t.Fatalf("two secrets: %q, %v", sig, err)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, "evt_1")
	h.Set(webhook.HeaderTimestamp, "1")
	h.Set(webhook.HeaderSignature, sig)
	for _, s := range []keystore.SigningSecret{a, b2} {
		if err := webhook.Verify(s, h, []byte("{}"), time.Unix(1, 0), time.Minute); err != nil {
			t.Fatalf("one of two secrets: %v", err)
		}
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestGuard: the destinations a delivery may never reach, as addresses
// and as URLs.
func TestGuard(t *testing.T) {
	admin := netip.MustParseAddrPort("127.0.0.1:9003")
	g := &webhook.Guard{Forbidden: []netip.AddrPort{admin, netip.MustParseAddrPort("[::]:9443")}}
	refused := []string{
		"169.254.169.254:80", "169.254.1.1:443", "[fe80::1]:80", "[fd00:ec2::254]:80", "100.100.100.200:80",
		"[::ffff:169.254.169.254]:80", "0.0.0.0:80", "[::]:80", "224.0.0.1:80", "255.255.255.255:80", "[ff02::1]:80",
		"127.0.0.1:9003", "[::ffff:127.0.0.1]:9003", "127.0.0.1:9443", "[::1]:9443",
	}
	for _, a := range refused {
		if err := g.CheckAddr(netip.MustParseAddrPort(a)); !errors.Is(err, webhook.ErrForbidden) {
			t.Errorf("CheckAddr(%s) = %v, want refused", a, err)
		}
	}
	for _, a := range []string{"127.0.0.1:8080", "10.0.0.5:443", "[2001:db8::1]:443", "93.184.216.34:443", "127.0.0.2:9003"} {
		if err := g.CheckAddr(netip.MustParseAddrPort(a)); err != nil {
			t.Errorf("CheckAddr(%s) = %v, want allowed", a, err)
		}
	}
	allow := &webhook.Guard{AllowLinkLocal: true}
	if err := allow.CheckAddr(netip.MustParseAddrPort("169.254.169.254:80")); err != nil {
		t.Errorf("with link-local allowed: %v", err)
	}
	ctx := context.Background()
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://127.0.0.1:9003/v1/keys",
		"http://localhost:9003/", "gopher://example.com/", "http://user:pw@example.com/", "http://0.0.0.0/", "http://127.0.0.1:99999/"} {
		err := g.CheckURL(ctx, u)
		var ve *keystore.ValidationError
		if !errors.As(err, &ve) || ve.Field != "url" {
			t.Errorf("CheckURL(%s) = %v, want a url field error", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/hook", "https://localhost/hook"} {
		if err := g.CheckURL(ctx, u); err != nil {
			t.Errorf("CheckURL(%s) = %v, want nil", u, err)
		}
	}
}

// clock is a settable clock for the store and the deliverer.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// runDeliverer runs d until the test ends.
func runDeliverer(t *testing.T, d *webhook.Deliverer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestReceiverDownThenUp: a receiver down for the first attempts, then
// up, gets every event exactly once after it recovers.
func TestReceiverDownThenUp(t *testing.T) {
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	s, _ := storetest.NewStore(t, keystore.Options{Now: clk.Now})
	r := hooktest.New(t, clk.Now)
	r.Down.Store(true)
	e, err := s.CreateEndpoint(context.Background(), keystore.EndpointParams{URL: r.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	r.SetSecret(e.Secret)
	const keys = 20
	for i := range keys {
		if _, _, err := s.Create(context.Background(), keystore.CreateParams{AccountID: "acct", Name: "k" + jsonNumber(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := webhook.New(webhook.Options{Store: s, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runDeliverer(t, d)
	// Three rounds of failed attempts, the clock moved past each backoff.
	for round := int64(1); round <= 3; round++ {
		waittest.Until(t, 10*time.Second, "a round of failed attempts", func() bool { return d.Stats().Retried.Load() >= uint64(round*keys) })
		clk.Advance(webhook.Backoff(int(round)) * 2)
	}
	r.Down.Store(false)
	waittest.Until(t, 10*time.Second, "every event delivered", func() bool { return d.Stats().Delivered.Load() == keys })
	time.Sleep(100 * time.Millisecond) // a duplicate would arrive now
	got := r.Accepted()
	if len(got) != keys || r.BadSignatures.Load() != 0 {
		t.Fatalf("%d distinct events delivered (%d bad signatures), want %d", len(got), r.BadSignatures.Load(), keys)
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("event %s delivered %d times", id, n)
		}
	}
	log, _ := s.Deliveries(context.Background(), keystore.DeliveryQuery{EndpointID: e.ID, Limit: 100})
	for _, dl := range log {
		if dl.State != "delivered" || dl.Attempts != 4 || dl.LastStatus != 204 {
			t.Fatalf("delivery log entry %+v: want delivered at the 4th attempt", dl)
		}
	}
}

// TestRetriesForADayThenGivesUp: a receiver that never recovers gets
// attempts with growing waits for at least 24 hours, then the delivery
// is failed with the reason.
func TestRetriesForADayThenGivesUp(t *testing.T) {
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	s, _ := storetest.NewStore(t, keystore.Options{Now: clk.Now})
	r := hooktest.New(t, clk.Now)
	r.Down.Store(true)
	e, _ := s.CreateEndpoint(context.Background(), keystore.EndpointParams{URL: r.URL})
	if _, _, err := s.Create(context.Background(), keystore.CreateParams{AccountID: "acct", Name: "k"}); err != nil {
		t.Fatal(err)
	}
	d, _ := webhook.New(webhook.Options{Store: s})
	start := clk.Now()
	var lastAttempt time.Time
	for attempt := 1; attempt < 100; attempt++ {
		claims, err := s.ClaimDeliveries(context.Background(), time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(claims) == 0 {
			break
		}
		lastAttempt = clk.Now()
		d.Attempt(context.Background(), claims[0])
		log, _ := s.Deliveries(context.Background(), keystore.DeliveryQuery{EndpointID: e.ID, Limit: 1})
		if log[0].State == "failed" {
			if !strings.Contains(log[0].LastError, "gave up") || !strings.Contains(log[0].LastError, "503") {
				t.Fatalf("the failed delivery says %q", log[0].LastError)
			}
			break
		}
		clk.Advance(log[0].NextAttemptAt.Sub(clk.Now()))
	}
	if span := lastAttempt.Sub(start); span < 24*time.Hour {
		t.Fatalf("the last attempt came %s after the event, want at least 24h", span)
	}
	if n := r.Attempts.Load(); n < 8 || n > 20 {
		t.Fatalf("%d attempts over a day, want exponential backoff (8 to 20)", n)
	}
	t.Logf("%d attempts over %s before giving up", r.Attempts.Load(), lastAttempt.Sub(start))
}

// TestHostileReceivers: a receiver that redirects, hangs, answers 10 MB
// or 410, and a destination refused at dial time: each attempt is
// contained and recorded with a clear error, and none is retried before
// its backoff.
func TestHostileReceivers(t *testing.T) {
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	s, _ := storetest.NewStore(t, keystore.Options{Now: clk.Now})
	hang := make(chan struct{})
	handlers := map[string]http.HandlerFunc{
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/", http.StatusTemporaryRedirect)
		},
		"hang": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		},
		"huge": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			chunk := []byte(strings.Repeat("x", 64<<10))
			for range 160 { // 10 MB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		},
		"gone": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) },
	}
	endpoints := map[string]string{}
	for name, h := range handlers {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		e, err := s.CreateEndpoint(context.Background(), keystore.EndpointParams{URL: srv.URL + "/" + name})
		if err != nil {
			t.Fatal(err)
		}
		endpoints[e.ID] = name
	}
	t.Cleanup(func() { close(hang) }) // before the servers close (cleanups run last first)
	// A name that resolved to an allowed address at registration and to
	// the metadata address later: the store holds the URL as given, and
	// the dialer's check is what refuses it.
	meta, _ := s.CreateEndpoint(context.Background(), keystore.EndpointParams{URL: "http://169.254.169.254/latest"})
	endpoints[meta.ID] = "metadata"
	if _, _, err := s.Create(context.Background(), keystore.CreateParams{AccountID: "acct", Name: "k"}); err != nil {
		t.Fatal(err)
	}
	d, _ := webhook.New(webhook.Options{Store: s, Timeout: 300 * time.Millisecond, Workers: 8})
	claims, err := s.ClaimDeliveries(context.Background(), time.Minute, 10)
	if err != nil || len(claims) != 5 {
		t.Fatalf("claims %d, %v", len(claims), err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range claims {
		wg.Go(func() { d.Attempt(context.Background(), c) })
	}
	wg.Wait()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("five hostile attempts took %s", took)
	}
	want := map[string]string{
		"redirect": "redirect", "hang": "did not answer within", "huge": "", "gone": "410", "metadata": "refused: ",
	}
	for id, name := range endpoints {
		log, _ := s.Deliveries(context.Background(), keystore.DeliveryQuery{EndpointID: id, Limit: 1})
		dl := log[0]
		if want[name] == "" {
			if dl.State != "delivered" {
				t.Errorf("%s: %+v, want delivered (its 10 MB body left unread)", name, dl)
			}
			continue
		}
		if dl.State != "pending" || !strings.Contains(dl.LastError, want[name]) || dl.NextAttemptAt == nil || !dl.NextAttemptAt.After(clk.Now()) {
			t.Errorf("%s: %+v, want pending with an error saying %q, retried later", name, dl, want[name])
		}
		if strings.Contains(dl.LastError, "/"+name) {
			t.Errorf("%s: the error repeats the URL: %q", name, dl.LastError)
		}
	}
	for id, name := range endpoints {
		e, _ := s.Endpoint(context.Background(), id)
		if (name == "gone") != (e.DisabledAt != nil) {
			t.Errorf("%s: disabled = %v; only the receiver that answered 410 is disabled", name, e.DisabledAt != nil)
		}
	}
	if again, _ := s.ClaimDeliveries(context.Background(), time.Minute, 10); len(again) != 0 {
		t.Fatalf("%d deliveries claimed again before their backoff", len(again))
	}
}

// TestDialTimeCheck: an endpoint whose host name resolves to a refused
// address at delivery time (DNS changed since registration) is refused
// when dialed: the receiver never sees a connection.
func TestDialTimeCheck(t *testing.T) {
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	s, _ := storetest.NewStore(t, keystore.Options{Now: clk.Now})
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(net.Conn, http.ConnState) { conns.Add(1) }
	srv.Start()
	t.Cleanup(srv.Close)
	ap := netip.MustParseAddrPort(srv.Listener.Addr().String())
	url := "http://localhost:" + jsonNumber(int64(ap.Port())) + "/"
	g := &webhook.Guard{}
	if err := g.CheckURL(context.Background(), url); err != nil {
		t.Fatalf("registration: %v", err)
	}
	if _, err := s.CreateEndpoint(context.Background(), keystore.EndpointParams{URL: url}); err != nil {
		t.Fatal(err)
	}
	// Now the address is the admin listener's (as if DNS had changed).
	g.Forbidden = []netip.AddrPort{netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port())}
	d, _ := webhook.New(webhook.Options{Store: s, Guard: g, Timeout: time.Second})
	if _, _, err := s.Create(context.Background(), keystore.CreateParams{AccountID: "acct", Name: "k"}); err != nil {
		t.Fatal(err)
	}
	claims, _ := s.ClaimDeliveries(context.Background(), time.Minute, 10)
	d.Attempt(context.Background(), claims[0])
	if conns.Load() != 0 {
		t.Fatal("the refused destination got a connection")
	}
	if d.Stats().Retried.Load() != 1 {
		t.Fatal("the refused attempt was not recorded as a failure")
	}
}
