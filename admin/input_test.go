package admin_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// TestAccountIDRule: an account id has one form. Anything a header, a
// proxy or a log would change (space at either end, a comma, a control or
// invisible character) is refused everywhere the API takes one, never
// trimmed, and nothing is written.
func TestAccountIDRule(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := []string{" acme", "acme ", "acme,beta", "acme, beta", "\tacme", "acme\n", "acme\r\nX-Evil: 1", "  ", "",
		"acme\u200b", "\u202eacme", "acmé", "аcme", "acme;beta", `acme"`, "a\x00", "-acme", "../acme", "${TENANT}",
		strings.Repeat("a", 201)}
	for _, id := range bad {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: map[string]any{"account_id": id, "name": "n"}, schema: schemaRejects})
			if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"account_id"}) {
				t.Fatalf("create: %d %s, want 400 on account_id", res.status, res.body)
			}
			if strings.TrimSpace(id) != "" && strings.Contains(string(res.body), id) {
				t.Fatalf("the problem repeats the id: %s", res.body)
			}
			// A token bound to acme: an id given must follow the rule too,
			// and "" is not "my account".
			res = f.do(call{method: "POST", path: "/v1/keys", token: f.acme, body: map[string]any{"account_id": id, "name": "n"}, schema: schemaRejects})
			if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"account_id"}) {
				t.Fatalf("create with a bound token: %d %s, want 400 on account_id", res.status, res.body)
			}
			res = f.do(call{method: "GET", path: "/v1/keys?account_id=" + url.QueryEscape(id), token: f.root, schema: schemaRejects})
			if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"account_id"}) {
				t.Fatalf("list: %d %s, want 400 on account_id", res.status, res.body)
			}
		})
	}
	if keys, events := f.count(); keys != 0 || events != 0 {
		t.Fatalf("refused creates wrote %d keys and %d events", keys, events)
	}
	for _, id := range []string{"acme", "0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b", "org:123", "alice+ci@example.com", "auth0|5f7c8ec7", "Tenant_7.eu"} {
		if k := f.create(map[string]any{"account_id": id}); k.AccountID != id {
			t.Fatalf("created for %q, got %q", id, k.AccountID)
		}
		var list admin.KeyList
		f.do(call{method: "GET", path: "/v1/keys?account_id=" + url.QueryEscape(id), token: f.root}).decode(t, &list)
		if len(list.Items) != 1 || list.Items[0].AccountID != id {
			t.Fatalf("listing %q: %+v", id, list.Items)
		}
	}
}

// TestTextThatDecodingWouldRepair: bytes that are not UTF-8 and unpaired
// surrogate escapes are refused, naming the member, in every body; JSON
// decoding would have replaced them with U+FFFD and stored that.
func TestTextThatDecodingWouldRepair(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{"name": "keep", "description": "keep"})
	type body struct{ member, value string }
	cases := []body{
		{"name", "\"ci\xff\""}, {"name", "\"ci\xc3\""}, {"name", "\"\xed\xa0\x80\""}, {"name", "\"\xc0\xaf\""},
		{"name", `"ci\ud800"`}, {"name", `"\udc00ci"`}, {"name", `"ci\ud83d\u0041"`}, {"name", `"ci\udfff\ud800"`},
		{"description", "\"d\xfe\""}, {"description", `"\ud800"`},
		{"metadata", "{\"tier\":\"gold\xff\"}"}, {"metadata", `{"tier":"\udbff"}`},
	}
	for _, c := range cases {
		t.Run(c.member+" "+c.value, func(t *testing.T) {
			create := map[string]string{"account_id": `"acme"`, "name": `"n"`}
			create[c.member] = c.value
			var parts []string
			for m, v := range create {
				parts = append(parts, `"`+m+`":`+v)
			}
			res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: "{" + strings.Join(parts, ",") + "}", schema: schemaAny})
			if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{c.member}) || !strings.Contains(res.problem.Errors[0].Detail, "UTF-8") {
				t.Fatalf("create: %d %s, want 400 on %s", res.status, res.body, c.member)
			}
			res = f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: `{"` + c.member + `":` + c.value + `}`, schema: schemaAny})
			if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{c.member}) {
				t.Fatalf("update: %d %s, want 400 on %s", res.status, res.body, c.member)
			}
		})
	}
	// In a member's name, or in a member no operation takes.
	for _, b := range []string{"{\"na\xffme\":\"n\",\"account_id\":\"acme\"}", `{"name":"n","account_id":"acme","x\ud800":1}`} {
		if res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: b, schema: schemaAny}); res.status != http.StatusBadRequest {
			t.Fatalf("%q: %d %s", b, res.status, res.body)
		}
	}
	if res := f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", token: f.root, body: `{"grace":"1h\ud800"}`, schema: schemaAny}); res.status != http.StatusBadRequest ||
		!cmp.Equal(res.fields(), []string{"grace"}) {
		t.Fatalf("rotate: %d %s", res.status, res.body)
	}
	// Pairs, and U+FFFD sent on purpose, are text.
	for _, name := range []string{`"ci \ud83d\ude80"`, `"ci \ufffd"`, "\"ci \xef\xbf\xbd\""} {
		res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: `{"account_id":"acme","name":` + name + `}`})
		if res.status != http.StatusCreated {
			t.Fatalf("%s: %d %s", name, res.status, res.body)
		}
	}
	var got admin.Key
	f.do(call{method: "GET", path: "/v1/keys/" + k.ID, token: f.root}).decode(t, &got)
	if got.Name != "keep" || got.Description != "keep" || len(got.Metadata) != 0 {
		t.Fatalf("refused patches changed the key: %+v", got)
	}
	if keys, _ := f.count(); keys != 4 {
		t.Fatalf("%d keys, want the first and the three good names", keys)
	}
}

// TestInvisibleCharacters: names refuse what would make two names look
// alike or show reversed; descriptions refuse the bidirectional controls
// and tags, and keep what prose in other scripts needs.
func TestInvisibleCharacters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{"name": "keep", "description": "keep"})
	for _, r := range []rune{0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200b, 0x200c, 0x200d, 0x200e, 0x200f,
		0x2060, 0xfeff, 0x00ad, 0x061c, 0x2028, 0xfe0f, 0x3164, 0xe0041} {
		name := "prod" + string(r) + "-ci"
		want := fmt.Sprintf("U+%04X", r)
		res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: map[string]any{"account_id": "acme", "name": name}, schema: schemaAny})
		if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"name"}) || !strings.Contains(res.problem.Errors[0].Detail, want) {
			t.Fatalf("create named %q: %d %s, want 400 on name naming %s", name, res.status, res.body, want)
		}
		res = f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: map[string]any{"name": name}, schema: schemaAny})
		if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"name"}) {
			t.Fatalf("rename to %q: %d %s", name, res.status, res.body)
		}
	}
	for _, r := range []rune{0x202a, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0xe0001, 0xe0041} {
		d := "deploys\n" + string(r) + "gnp.exe"
		res := f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: map[string]any{"description": d}, schema: schemaAny})
		if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"description"}) {
			t.Fatalf("description %q: %d %s", d, res.status, res.body)
		}
	}
	for _, d := range []string{"می\u200cخواهم", "עברית\u200f (EN)", "line one\n\tline two", "👩\u200d💻 on call"} {
		res := f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: map[string]any{"description": d}})
		if res.status != http.StatusOK {
			t.Fatalf("description %q: %d %s", d, res.status, res.body)
		}
	}
	var got admin.Key
	f.do(call{method: "GET", path: "/v1/keys/" + k.ID, token: f.root}).decode(t, &got)
	if got.Name != "keep" {
		t.Fatalf("refused patches renamed the key: %q", got.Name)
	}
}

// TestTamperedCursor: a cursor this API did not write is a 400 on cursor,
// never a 503, and nothing is logged as a store failure.
func TestTamperedCursor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for range 3 {
		f.create(map[string]any{})
	}
	var page admin.KeyList
	f.do(call{method: "GET", path: "/v1/keys?limit=1", token: f.root}).decode(t, &page)
	if page.NextCursor == nil {
		t.Fatal("no next page")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(*page.NextCursor)
	micros, id, _ := strings.Cut(string(raw), ".")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tampered := []string{
		"abc", "!!!!", *page.NextCursor + "A", strings.Repeat("A", 200),
		enc(micros + "." + strings.Repeat("z", 36)),                               // an id that is not a UUID, of the right length
		enc(micros + "." + strings.ReplaceAll(id, "-", "_")),                      // dashes swapped
		enc(micros + "." + strings.ToUpper(id)),                                   // not as written
		enc(micros + "." + "{" + id[:34] + "}"),                                   // braces
		enc(micros + "." + "'; select pg_sleep(1); --" + strings.Repeat(" ", 11)), // 36 characters of SQL
		enc("9223372036854775807." + id),                                          // beyond any date
		enc("-9223372036854775808." + id),                                         // before any date
		enc("-1." + id), enc("+1." + id), enc("01." + id), enc(" 1." + id), enc("1e6." + id), enc("." + id), enc(micros),
		enc(micros + "." + id + "."), enc(micros + ".\x00" + id[1:]), enc(micros + "." + id[:35] + "\xff"),
		enc("253402300800000000." + id), // the first microsecond of year 10000
	}
	for _, c := range tampered {
		res := f.do(call{method: "GET", path: "/v1/keys?cursor=" + url.QueryEscape(c), token: f.root, schema: schemaAny})
		if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"cursor"}) {
			t.Errorf("cursor %q: %d %s, want 400 on cursor", c, res.status, res.body)
		}
	}
	if logs := f.logs.String(); strings.Contains(logs, `"level":"WARN"`) || strings.Contains(logs, "store failed") {
		t.Fatalf("tampered cursors logged a store failure:\n%s", logs)
	}
	// The last instant a cursor may name still lists (nothing after it).
	res := f.do(call{method: "GET", path: "/v1/keys?cursor=" + enc("253402300799999999."+id), token: f.root})
	if res.status != http.StatusOK {
		t.Fatalf("the latest cursor: %d %s", res.status, res.body)
	}
}

// TestBornExpired: a lifetime too short for the key to outlive its own
// creation is refused with the minimum stated; the minimum itself works.
func TestBornExpired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, in := range []string{"1ns", "1us", "1µs", "999us", "1ms", "500ms", "999ms", "999999999ns", "1s", "59s", "59999ms"} {
		res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: map[string]any{"account_id": "acme", "name": "n", "expires_in": in}, schema: schemaAny})
		if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"expires_in"}) || !strings.Contains(res.problem.Errors[0].Detail, "at least "+keystore.FormatDuration(keystore.MinLifetime)) {
			t.Fatalf("expires_in %s: %d %s, want 400 on expires_in stating the minimum", in, res.status, res.body)
		}
	}
	for _, at := range []time.Duration{time.Nanosecond, time.Millisecond, 500 * time.Millisecond, 30 * time.Second} {
		when := time.Now().Add(at).UTC().Format(time.RFC3339Nano)
		res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: map[string]any{"account_id": "acme", "name": "n", "expires_at": when}, schema: schemaAny})
		if res.status != http.StatusBadRequest || !cmp.Equal(res.fields(), []string{"expires_at"}) {
			t.Fatalf("expires_at now+%s: %d %s, want 400 on expires_at", at, res.status, res.body)
		}
	}
	if keys, _ := f.count(); keys != 0 {
		t.Fatalf("%d keys made", keys)
	}
	k := f.create(map[string]any{"expires_in": keystore.FormatDuration(keystore.MinLifetime)})
	if k.Status != "active" || k.ExpiresAt.Sub(k.CreatedAt) != keystore.MinLifetime {
		t.Fatalf("a key of the minimum lifetime: %+v", k)
	}
}
