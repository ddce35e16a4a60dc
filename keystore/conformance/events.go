package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// eventTests check events out: the outbox written with each change, the
// endpoints, claims that hold once, the delivery log, expiry warnings and
// leak reports.
var eventTests = []test{
	{"OutboxWrittenWithEachChange", testOutboxWrittenWithEachChange},
	{"OutboxOnlyForSubscribers", testOutboxOnlyForSubscribers},
	{"EndpointLifecycle", testEndpointLifecycle},
	{"ClaimsHoldOnce", testClaimsHoldOnce},
	{"DeliveryOutcomes", testDeliveryOutcomes},
	{"ExpiryWarningsOncePerKeyAndLead", testExpiryWarningsOncePerKeyAndLead},
	{"ExpiryWarningsOnceAcrossReplicas", testExpiryWarningsOnceAcrossReplicas},
	{"LeakReports", testLeakReports},
	{"LookupKeyByValue", testLookupKeyByValue},
}

func mustEndpoint(t *testing.T, s *keystore.Store, p keystore.EndpointParams) *keystore.Endpoint {
	t.Helper()
	if p.URL == "" {
		p.URL = "https://hooks.example.com/keygate"
	}
	e, err := s.CreateEndpoint(context.Background(), p)
	if err != nil {
		t.Fatalf("CreateEndpoint: %v", err)
	}
	return e
}

// claimAll claims every due delivery (a long lease) and returns the
// claims.
func claimAll(t *testing.T, s *keystore.Store) []keystore.Claim {
	t.Helper()
	claims, err := s.ClaimDeliveries(context.Background(), time.Hour, 1000)
	if err != nil {
		t.Fatalf("ClaimDeliveries: %v", err)
	}
	return claims
}

// deliverAll claims every due delivery and records it delivered, and
// returns the claims.
func deliverAll(t *testing.T, s *keystore.Store) []keystore.Claim {
	t.Helper()
	claims := claimAll(t, s)
	for _, c := range claims {
		if ok, err := s.FinishDelivery(context.Background(), keystore.DeliveryOutcome{DeliveryID: c.DeliveryID, Attempt: c.Attempt,
			At: s.Clock(), State: keystore.DeliveryDelivered, Status: 200}); !ok || err != nil {
			t.Fatalf("FinishDelivery = %v, %v", ok, err)
		}
	}
	return claims
}

// payload is what the suite reads of an event's payload.
type payload struct {
	Type string `json:"type"`
	Data struct {
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
		Detail map[string]any `json:"detail"`
	} `json:"data"`
}

// payloadOf decodes a claim's payload.
func payloadOf(t *testing.T, c keystore.Claim) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(c.Payload, &p); err != nil {
		t.Fatalf("payload %s: %v", c.Payload, err)
	}
	return p
}

// eventTypesOf lists the claims' event types, in claim order.
func eventTypesOf(claims []keystore.Claim) []string {
	var out []string
	for _, c := range claims {
		out = append(out, c.EventType)
	}
	return out
}

func testOutboxWrittenWithEachChange(t *testing.T, h Harness) {
	clk := newClock()
	s, db := h.newStoreAt(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	e := mustEndpoint(t, s, keystore.EndpointParams{})
	k, secret := mustCreate(t, s, keystore.CreateParams{Metadata: map[string]string{"tier": "gold"}})
	if _, err := s.Update(ctx, k.ID, keystore.UpdateParams{Name: ptr("renamed"), Actor: "ops"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Disable(ctx, k.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enable(ctx, k.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	r, err := s.Rotate(ctx, k.ID, keystore.RotateParams{Grace: time.Hour, Actor: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(ctx, r.New.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	// A refused change writes no event.
	before := snapshot(t, db)
	if _, err := s.Revoke(ctx, r.New.ID, "ops"); !errors.Is(err, keystore.ErrRevoked) {
		t.Fatalf("second revoke: %v", err)
	}
	if after := snapshot(t, db); after != before {
		t.Fatal("a refused revocation changed the database")
	}
	claims := claimAll(t, s)
	want := []string{"key.created", "key.updated", "key.disabled", "key.enabled", "key.created", "key.rotated", "key.revoked"}
	if got := eventTypesOf(claims); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	ids := map[string]bool{}
	for _, c := range claims {
		if c.EndpointID != e.ID || c.URL != e.URL || c.Attempt != 1 || len(c.Secrets) != 1 || c.Secrets[0] != e.Secret {
			t.Fatalf("claim %+v does not name the endpoint, its secret and the first attempt", c)
		}
		if ids[c.EventID] || !strings.HasPrefix(c.EventID, "evt_") {
			t.Fatalf("event id %q repeated or malformed", c.EventID)
		}
		ids[c.EventID] = true
		var p struct {
			Type      string    `json:"type"`
			Timestamp time.Time `json:"timestamp"`
			Data      struct {
				Key struct {
					ID        string            `json:"id"`
					AccountID string            `json:"account_id"`
					Status    string            `json:"status"`
					Metadata  map[string]string `json:"metadata"`
				} `json:"key"`
				Actor string `json:"actor"`
			} `json:"data"`
		}
		if err := json.Unmarshal(c.Payload, &p); err != nil {
			t.Fatalf("payload %s: %v", c.Payload, err)
		}
		if p.Type != c.EventType || p.Data.Key.AccountID != "acct-1" || p.Data.Key.Metadata["tier"] != "gold" || !p.Timestamp.Equal(clk.Now()) {
			t.Fatalf("payload %s: want type %s, the key's account and metadata, and the change's time", c.Payload, c.EventType)
		}
		body := string(c.Payload)
		for _, leak := range []string{secret.Reveal(), r.Secret.Reveal(), k.Digest.String(), `"digest"`, "hash"} {
			if strings.Contains(body, leak) {
				t.Fatalf("payload %s carries a secret or a digest (%q)", body, leak[:min(8, len(leak))])
			}
		}
	}
	var revoked struct {
		Data struct {
			Key struct {
				Status string `json:"status"`
			} `json:"key"`
		} `json:"data"`
	}
	json.Unmarshal(claims[len(claims)-1].Payload, &revoked)
	if revoked.Data.Key.Status != "revoked" {
		t.Fatalf("key.revoked carries status %q", revoked.Data.Key.Status)
	}
}

func testOutboxOnlyForSubscribers(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	// Changes before any endpoint exists are not queued for later ones.
	early, _ := mustCreate(t, s, keystore.CreateParams{})
	revokesOfA := mustEndpoint(t, s, keystore.EndpointParams{AccountID: "acct-a", EventTypes: []string{"key.revoked"}})
	everything := mustEndpoint(t, s, keystore.EndpointParams{URL: "http://127.0.0.1:9/all"})
	a, _ := mustCreate(t, s, keystore.CreateParams{AccountID: "acct-a"})
	b, _ := mustCreate(t, s, keystore.CreateParams{AccountID: "acct-b"})
	for _, id := range []string{a.ID, b.ID, early.ID} {
		if _, err := s.Revoke(ctx, id, "ops"); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]string{}
	for _, c := range claimAll(t, s) {
		got[c.EndpointID] = append(got[c.EndpointID], c.EventType)
	}
	if want := []string{"key.revoked"}; !slices.Equal(got[revokesOfA.ID], want) {
		t.Fatalf("the endpoint of acct-a's revocations got %v, want %v", got[revokesOfA.ID], want)
	}
	if want := []string{"key.created", "key.created", "key.revoked", "key.revoked", "key.revoked"}; !slices.Equal(got[everything.ID], want) {
		t.Fatalf("the endpoint of everything got %v, want %v", got[everything.ID], want)
	}
	// The backend's rule, in its SQL, is Endpoint.Subscribes.
	changes := [][2]string{{"key.created", "acct-a"}, {"key.created", "acct-b"}, {"key.revoked", "acct-a"}, {"key.revoked", "acct-b"},
		{"key.revoked", early.AccountID}}
	for _, e := range []*keystore.Endpoint{revokesOfA, everything} {
		var want []string
		for _, c := range changes {
			if e.Subscribes(c[0], c[1]) {
				want = append(want, c[0])
			}
		}
		if g := slices.Sorted(slices.Values(got[e.ID])); !slices.Equal(g, want) {
			t.Fatalf("endpoint %s got %v, Endpoint.Subscribes says %v", e.ID, g, want)
		}
	}
}

func testEndpointLifecycle(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	for _, bad := range []keystore.EndpointParams{
		{URL: "ftp://example.com/x"},
		{URL: "https://user:pw@example.com/x"},
		{URL: "https://example.com/x#frag"},
		{URL: "https:///nohost"},
		{URL: "https://example.com/a b"},
		{URL: "https://example.com/", EventTypes: []string{"key.exploded"}},
		{URL: "https://example.com/", AccountID: " acct"},
		{URL: "https://example.com/" + strings.Repeat("a", keystore.MaxEndpointURLLen)},
	} {
		if _, err := s.CreateEndpoint(ctx, bad); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("CreateEndpoint(%q, %v) = %v, want ErrInvalid", bad.URL[:min(40, len(bad.URL))], bad.EventTypes, err)
		}
	}
	if es, _ := s.Endpoints(ctx, ""); len(es) != 0 {
		t.Fatalf("refused endpoints were stored: %d", len(es))
	}
	e := mustEndpoint(t, s, keystore.EndpointParams{AccountID: "acct-1", EventTypes: []string{"key.revoked", "key.created", "key.revoked"},
		Description: "pager"})
	if !strings.HasPrefix(e.Secret.Reveal(), "whsec_") || !slices.Equal(e.EventTypes, []string{"key.created", "key.revoked"}) {
		t.Fatalf("created %+v", e)
	}
	if key, err := e.Secret.Key(); err != nil || len(key) != 32 {
		t.Fatalf("secret key: %d bytes, %v", len(key), err)
	}
	got, err := s.Endpoint(ctx, e.ID)
	if err != nil || got.URL != e.URL || got.AccountID != "acct-1" || got.Secret != e.Secret || got.Description != "pager" {
		t.Fatalf("Endpoint = %+v, %v", got, err)
	}
	if es, _ := s.Endpoints(ctx, "acct-2"); len(es) != 0 {
		t.Fatalf("another account's listing holds %d endpoints", len(es))
	}
	if es, _ := s.Endpoints(ctx, "acct-1"); len(es) != 1 {
		t.Fatalf("the account's listing holds %d endpoints, want 1", len(es))
	}
	url := "https://other.example.com/hook"
	off := false
	up, err := s.UpdateEndpoint(ctx, e.ID, keystore.EndpointChange{URL: &url, EventTypes: &[]string{}, Enabled: &off})
	if err != nil || up.URL != url || up.EventTypes != nil || up.DisabledAt == nil {
		t.Fatalf("UpdateEndpoint = %+v, %v", up, err)
	}
	// Rotation with overlap: both secrets sign until the overlap ends.
	old := e.Secret
	rot, err := s.RotateEndpointSecret(ctx, e.ID, time.Hour)
	if err != nil || rot.Secret == old {
		t.Fatalf("RotateEndpointSecret = %v", err)
	}
	stored, _ := s.Endpoint(ctx, e.ID)
	if got := stored.Secrets(clk.Now()); !slices.Equal(got, []keystore.SigningSecret{rot.Secret, old}) {
		t.Fatal("during the overlap the new and the old secret must both sign")
	}
	if got := stored.Secrets(clk.Now().Add(time.Hour)); !slices.Equal(got, []keystore.SigningSecret{rot.Secret}) {
		t.Fatal("after the overlap only the new secret signs")
	}
	if _, err := s.RotateEndpointSecret(ctx, e.ID, 30*24*time.Hour); !errors.Is(err, keystore.ErrInvalid) {
		t.Fatalf("an overlap of 30 days: %v, want ErrInvalid", err)
	}
	if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Endpoint(ctx, e.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("a deleted endpoint: %v", err)
	}
	if err := s.DeleteEndpoint(ctx, e.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

// testClaimsHoldOnce: claimers on several backends of one database (as
// replicas) claiming at once never get the same delivery; a claim is not
// claimed again while it lasts, and is once it has lapsed (the claimer
// died), as the next attempt.
func testClaimsHoldOnce(t *testing.T, h Harness) {
	clk := newClock()
	s, db := h.newStoreAt(t, keystore.Options{Now: clk.Now})
	mustEndpoint(t, s, keystore.EndpointParams{})
	mustEndpoint(t, s, keystore.EndpointParams{URL: "https://second.example.com/"})
	const keys = 60
	for range keys {
		mustCreate(t, s, keystore.CreateParams{})
	}
	claimers := []*keystore.Store{s, newStoreOn(t, db(t), keystore.Options{Now: clk.Now}), newStoreOn(t, db(t), keystore.Options{Now: clk.Now}),
		newStoreOn(t, db(t), keystore.Options{Now: clk.Now})}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for _, c := range claimers {
		wg.Go(func() {
			for {
				claims, err := c.ClaimDeliveries(context.Background(), time.Minute, 7)
				if err != nil {
					t.Errorf("ClaimDeliveries: %v", err)
					return
				}
				if len(claims) == 0 {
					return
				}
				mu.Lock()
				for _, cl := range claims {
					seen[cl.DeliveryID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 2*keys {
		t.Fatalf("%d deliveries claimed, want %d", len(seen), 2*keys)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("delivery %d claimed %d times", id, n)
		}
	}
	if again := claimAll(t, s); len(again) != 0 {
		t.Fatalf("%d deliveries claimed again while their claims last", len(again))
	}
	clk.Advance(time.Minute)
	again := claimAll(t, s)
	if len(again) != 2*keys {
		t.Fatalf("after the claims lapsed %d deliveries were claimed again, want %d", len(again), 2*keys)
	}
	for _, c := range again {
		if c.Attempt != 2 {
			t.Fatalf("a lapsed claim was claimed as attempt %d, want 2", c.Attempt)
		}
	}
}

func testDeliveryOutcomes(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	e := mustEndpoint(t, s, keystore.EndpointParams{})
	for range 3 {
		mustCreate(t, s, keystore.CreateParams{})
	}
	claims := claimAll(t, s)
	if len(claims) != 3 {
		t.Fatalf("%d claims, want 3", len(claims))
	}
	now := clk.Now()
	// A stale attempt number changes nothing.
	if ok, err := s.FinishDelivery(ctx, keystore.DeliveryOutcome{DeliveryID: claims[0].DeliveryID, Attempt: 7, At: now,
		State: keystore.DeliveryDelivered}); ok || err != nil {
		t.Fatalf("finishing a lost claim = %v, %v; want false", ok, err)
	}
	finish := func(c keystore.Claim, o keystore.DeliveryOutcome) {
		t.Helper()
		o.DeliveryID, o.Attempt, o.At = c.DeliveryID, c.Attempt, now
		if ok, err := s.FinishDelivery(ctx, o); !ok || err != nil {
			t.Fatalf("FinishDelivery = %v, %v", ok, err)
		}
	}
	finish(claims[0], keystore.DeliveryOutcome{State: keystore.DeliveryDelivered, Status: 204})
	finish(claims[1], keystore.DeliveryOutcome{State: keystore.DeliveryPending, NextAttemptAt: now.Add(time.Minute), Status: 500,
		Error: "the receiver answered 500"})
	finish(claims[2], keystore.DeliveryOutcome{State: keystore.DeliveryFailed, Status: 0, Error: "gave up"})
	if ok, _ := s.FinishDelivery(ctx, keystore.DeliveryOutcome{DeliveryID: claims[0].DeliveryID, Attempt: claims[0].Attempt, At: now,
		State: keystore.DeliveryFailed}); ok {
		t.Fatal("a delivered delivery was finished again")
	}
	log, err := s.Deliveries(ctx, keystore.DeliveryQuery{EndpointID: e.ID, Limit: 10})
	if err != nil || len(log) != 3 {
		t.Fatalf("Deliveries = %d, %v", len(log), err)
	}
	byID := map[int64]keystore.Delivery{}
	for _, d := range log {
		byID[d.ID] = d
	}
	if d := byID[claims[0].DeliveryID]; d.State != "delivered" || d.DeliveredAt == nil || d.LastStatus != 204 || d.Attempts != 1 {
		t.Fatalf("delivered: %+v", d)
	}
	if d := byID[claims[1].DeliveryID]; d.State != "pending" || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(now.Add(time.Minute)) ||
		d.LastError != "the receiver answered 500" || d.EventType != "key.created" {
		t.Fatalf("retrying: %+v", d)
	}
	if d := byID[claims[2].DeliveryID]; d.State != "failed" || d.LastError != "gave up" {
		t.Fatalf("failed: %+v", d)
	}
	if page, _ := s.Deliveries(ctx, keystore.DeliveryQuery{EndpointID: e.ID, Limit: 2}); len(page) != 2 || page[0].ID < page[1].ID {
		t.Fatal("the log is not newest first")
	}
	// Not due yet; then due.
	if c := claimAll(t, s); len(c) != 0 {
		t.Fatalf("a retry was claimed before it was due: %d", len(c))
	}
	clk.Advance(time.Minute)
	retry := claimAll(t, s)
	if len(retry) != 1 || retry[0].DeliveryID != claims[1].DeliveryID || retry[0].Attempt != 2 {
		t.Fatalf("the due retry: %+v", retry)
	}
	// 410 Gone disables the endpoint: nothing is claimed until enabled.
	finish(retry[0], keystore.DeliveryOutcome{State: keystore.DeliveryPending, NextAttemptAt: now, Status: 410, DisableEndpoint: "410 Gone"})
	if got, _ := s.Endpoint(ctx, e.ID); got.DisabledAt == nil || got.DisabledReason != "410 Gone" {
		t.Fatalf("after 410 the endpoint is %+v", got)
	}
	if c := claimAll(t, s); len(c) != 0 {
		t.Fatal("a disabled endpoint's delivery was claimed")
	}
	// Redeliver the failed one and enable the endpoint: both go out.
	if err := s.Redeliver(ctx, e.ID, claims[2].DeliveryID); err != nil {
		t.Fatal(err)
	}
	if err := s.Redeliver(ctx, e.ID, 1<<40); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("redelivering nothing: %v", err)
	}
	on := true
	if _, err := s.UpdateEndpoint(ctx, e.ID, keystore.EndpointChange{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	if c := claimAll(t, s); len(c) != 2 {
		t.Fatalf("after enabling and redelivering %d claims, want 2", len(c))
	}
	// Pruning keeps what is pending.
	if n, err := s.PruneEvents(ctx, clk.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("PruneEvents = %d, %v; want the one delivered event", n, err)
	}
}

func testExpiryWarningsOncePerKeyAndLead(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	mustEndpoint(t, s, keystore.EndpointParams{EventTypes: []string{"key.expiring", "key.expired"}})
	leads := keystore.DefaultExpiryLeads
	leads, _ = keystore.NormalizeExpiryLeads(leads)
	day := 24 * time.Hour
	long, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: 20 * day}})
	short, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: 2 * day}})
	revoked, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: 2 * day}})
	s.Revoke(ctx, revoked.ID, "ops")
	mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{Never: true}})
	rotated, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: 2 * day}})
	if _, err := s.Rotate(ctx, rotated.ID, keystore.RotateParams{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	claimAll(t, s) // nothing subscribes to those: none
	warnings := map[string][]string{}
	pass := func() {
		t.Helper()
		if _, err := s.WarnExpiring(ctx, leads); err != nil {
			t.Fatal(err)
		}
		for _, c := range deliverAll(t, s) {
			p := payloadOf(t, c)
			what := c.EventType
			if l, ok := p.Data.Detail["lead"].(string); ok {
				what += " " + l
			}
			warnings[p.Data.Key.ID] = append(warnings[p.Data.Key.ID], what)
		}
	}
	// Step the clock an hour at a time through 21 days, with two passes
	// at every step (a restart, a second replica).
	for range 21 * 24 {
		pass()
		pass()
		clk.Advance(time.Hour)
	}
	if want := []string{"key.expiring 14d", "key.expiring 3d", "key.expiring 1d", "key.expired"}; !slices.Equal(warnings[long.ID], want) {
		t.Errorf("the key living 20 days got %v, want %v", warnings[long.ID], want)
	}
	// The rotation's successor keeps the two-day expiry: it is warned.
	if want := []string{"key.expiring 3d", "key.expiring 1d", "key.expired"}; !slices.Equal(warnings[short.ID], want) {
		t.Errorf("the key living 2 days got %v, want %v", warnings[short.ID], want)
	}
	if len(warnings[revoked.ID]) != 0 || len(warnings[rotated.ID]) != 0 {
		t.Errorf("a revoked key got %v and a rotated one %v; want none", warnings[revoked.ID], warnings[rotated.ID])
	}
	if len(warnings) != 3 {
		t.Errorf("warnings went to %d keys, want 3 (two, and the rotation's successor)", len(warnings))
	}
	// A key whose expiry is moved is warned again for the new one.
	k, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: 2 * day}})
	pass()
	if _, err := s.Update(ctx, k.ID, keystore.UpdateParams{Expiry: &keystore.Expiry{In: 2*day + time.Hour}}); err != nil {
		t.Fatal(err)
	}
	pass()
	if want := []string{"key.expiring 3d", "key.expiring 3d"}; !slices.Equal(warnings[k.ID], want) {
		t.Errorf("a key whose expiry moved got %v, want %v", warnings[k.ID], want)
	}
	counts, err := s.CountExpiring(ctx, leads)
	if err != nil || !slices.Equal(counts, []int{0, 1, 1}) {
		t.Fatalf("CountExpiring = %v, %v; want [0 1 1] (the key expiring in 2 days)", counts, err)
	}
}

// testExpiryWarningsOnceAcrossReplicas: stores on several backends of
// one database warning at once send each warning once.
func testExpiryWarningsOnceAcrossReplicas(t *testing.T, h Harness) {
	clk := newClock()
	s, db := h.newStoreAt(t, keystore.Options{Now: clk.Now})
	mustEndpoint(t, s, keystore.EndpointParams{EventTypes: []string{"key.expiring"}})
	const keys = 40
	for range keys {
		mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: 2 * 24 * time.Hour}})
	}
	leads, _ := keystore.NormalizeExpiryLeads(keystore.DefaultExpiryLeads)
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := 0
	for range 4 {
		r := newStoreOn(t, db(t), keystore.Options{Now: clk.Now})
		wg.Go(func() {
			n, err := r.WarnExpiring(context.Background(), leads)
			if err != nil {
				t.Errorf("WarnExpiring: %v", err)
			}
			mu.Lock()
			sent += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if got := len(claimAll(t, s)); sent != keys || got != keys {
		t.Fatalf("four replicas sent %d warnings and queued %d, want %d (one per key)", sent, got, keys)
	}
}

func testLeakReports(t *testing.T, h Harness) {
	s, db := h.newStoreAt(t, keystore.Options{})
	ctx := context.Background()
	mustEndpoint(t, s, keystore.EndpointParams{EventTypes: []string{"key.leaked", "key.revoked", "key.disabled"}})
	a, secretA := mustCreate(t, s, keystore.CreateParams{})
	b, secretB := mustCreate(t, s, keystore.CreateParams{})
	c, secretC := mustCreate(t, s, keystore.CreateParams{})
	stranger, _ := keystore.GenerateSecret("kg")
	wrongSum := secretA.Reveal()[:len(secretA.Reveal())-1] + "x"
	if wrongSum == secretA.Reveal() {
		wrongSum = secretA.Reveal()[:len(secretA.Reveal())-1] + "y"
	}
	report := keystore.LeakReport{Reporter: "github", Policy: keystore.LeakRevoke, Body: []byte("body-1"), Tokens: []keystore.LeakedToken{
		{Token: secretA.Reveal(), URL: "https://github.com/o/r/blob/1/a.txt", Source: "content"},
		{Token: stranger.Reveal()},
		{Token: wrongSum},
		{Token: "ghp_notours"},
	}}
	out, err := s.HandleLeak(ctx, report)
	if err != nil || out != (keystore.LeakOutcome{Tokens: 4, Ignored: 2, Unknown: 1, Found: 1, Revoked: 1}) {
		t.Fatalf("HandleLeak = %+v, %v", out, err)
	}
	if stateOf(t, s, secretA, time.Now()) != keystore.StateRevoked {
		t.Fatal("the leaked key is not revoked")
	}
	events, _ := s.Events(ctx, a.ID)
	last := events[len(events)-1]
	if last.Action != "leak" || last.Actor != "leak:github" || last.Detail["url"] != "https://github.com/o/r/blob/1/a.txt" ||
		last.Detail["action"] != "revoke" || events[len(events)-2].Action != "revoke" {
		t.Fatalf("the audit trail ends %+v", events[len(events)-2:])
	}
	// A replay changes nothing.
	before := snapshot(t, db)
	if _, err := s.HandleLeak(ctx, report); !errors.Is(err, keystore.ErrReplayed) {
		t.Fatalf("a replay: %v, want ErrReplayed", err)
	}
	if snapshot(t, db) != before {
		t.Fatal("a replayed report changed the database")
	}
	// Disable and notify.
	if _, err := s.HandleLeak(ctx, keystore.LeakReport{Reporter: "gitlab", Policy: keystore.LeakDisable, Body: []byte("2"),
		Tokens: []keystore.LeakedToken{{Token: secretB.Reveal()}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HandleLeak(ctx, keystore.LeakReport{Reporter: "gitlab", Policy: keystore.LeakNotify, Body: []byte("3"),
		Tokens: []keystore.LeakedToken{{Token: secretC.Reveal()}}}); err != nil {
		t.Fatal(err)
	}
	if stateOf(t, s, secretB, time.Now()) != keystore.StateDisabled || stateOf(t, s, secretC, time.Now()) != keystore.StateActive {
		t.Fatal("disable or notify did the wrong thing")
	}
	got := map[string][]string{}
	for _, cl := range claimAll(t, s) {
		p := payloadOf(t, cl)
		got[p.Data.Key.ID] = append(got[p.Data.Key.ID], cl.EventType)
	}
	if !slices.Equal(got[a.ID], []string{"key.revoked", "key.leaked"}) || !slices.Equal(got[b.ID], []string{"key.disabled", "key.leaked"}) ||
		!slices.Equal(got[c.ID], []string{"key.leaked"}) {
		t.Fatalf("events %v", got)
	}
	for _, bad := range []keystore.LeakReport{
		{Reporter: "github", Policy: "explode", Body: []byte("x"), Tokens: []keystore.LeakedToken{{Token: "x"}}},
		{Reporter: "github", Policy: keystore.LeakRevoke, Body: []byte("y")},
	} {
		if _, err := s.HandleLeak(ctx, bad); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("HandleLeak(%+v) = %v, want ErrInvalid", bad.Policy, err)
		}
	}
}

func testLookupKeyByValue(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{})
	got, err := s.LookupKey(ctx, secret)
	if err != nil || got.ID != k.ID || got.AccountID != k.AccountID {
		t.Fatalf("LookupKey = %+v, %v", got, err)
	}
	if _, err := s.Revoke(ctx, k.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupKey(ctx, secret); err != nil || got.RevokedAt == nil {
		t.Fatalf("a revoked key by value = %+v, %v; want it, revoked", got, err)
	}
	other, _ := keystore.GenerateSecret("kg")
	if _, err := s.LookupKey(ctx, other); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("an unknown key: %v", err)
	}
}
