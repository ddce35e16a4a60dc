package authz

import (
	"log/slog"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
)

// TestDecisionLogNamesRefusedKeys: a key found but refused as revoked,
// disabled or expired is named in the decision log and on the decision's
// span (key id and account),
// so that an operator can tell which key a client still uses; the
// decision itself carries no key, so the client learns nothing more than
// for an unknown key.
func TestDecisionLogNamesRefusedKeys(t *testing.T) {
	w := authztest.NewWorld(t)
	out := &syncBuffer{}
	rec := tracetest.NewSpanRecorder()
	s := newTestServer(t, w.Lookup, func(c *Config) {
		c.DecisionLog, c.DecisionLogger, c.DecisionLogRate = DecisionLogDenials, slog.New(slog.NewJSONHandler(out, nil)), 1e6
		c.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	})
	cases := []struct {
		secret, keyID, reason string
	}{
		{w.Revoked.Secret, "k-revoked", "revoked"},
		{w.Disabled.Secret, "k-disabled", "disabled"},
		{w.Expired.Secret, "k-expired", "expired"},
	}
	for _, c := range cases {
		d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": c.secret}, "")
		if d.Outcome != InvalidKey || d.Key != nil {
			t.Fatalf("%s: outcome %v, key %v; want invalid_api_key and no key in the decision", c.keyID, d.Outcome, d.Key)
		}
	}
	lines := out.lines(t)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	for i, c := range cases {
		if lines[i]["key_id"] != c.keyID || lines[i]["account_id"] != "acct-"+c.keyID || lines[i]["reason"] != c.reason {
			t.Errorf("line %d = %v, want key_id %s, account_id acct-%s, reason %s", i, lines[i], c.keyID, c.keyID, c.reason)
		}
		attrs := map[string]string{}
		for _, a := range spans[i].Attributes() {
			attrs[string(a.Key)] = a.Value.String()
		}
		if attrs["keygate.key_id"] != c.keyID || attrs["keygate.account_id"] != "acct-"+c.keyID {
			t.Errorf("span %d names key %q of %q, want %s of acct-%s", i, attrs["keygate.key_id"], attrs["keygate.account_id"], c.keyID, c.keyID)
		}
	}
	// An unknown key names none.
	unknown, err := keystore.GenerateSecret("kg")
	if err != nil {
		t.Fatal(err)
	}
	s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": unknown.Reveal()}, "")
	if last := out.lines(t)[3]; last["key_id"] != "" || last["reason"] != "unknown" {
		t.Fatalf("an unknown key's line: %v", last)
	}
}
