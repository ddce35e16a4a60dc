package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// FuzzParseTokens: the tokens file parser never panics, accepts only
// entries it can use, and never repeats a token found in the file.
func FuzzParseTokens(f *testing.F) {
	token, entry, _ := NewToken("seed", "acme")
	f.Add("- name: a\n  sha256: " + entry.SHA256 + "\n  account: acme\n")
	f.Add("[]\n")
	f.Add("- {name: x, sha256: '" + strings.Repeat("0", 64) + "'}\n- *a\n")
	f.Add("- name: x\n  sha256: " + token.Reveal() + "\n")
	f.Add("- &a {name: x}\n- !!str y\n--- \n[]\n")
	f.Add("- name: [\n")
	f.Fuzz(func(t *testing.T, data string) {
		set, err := parseTokens("tokens.yaml", []byte(data))
		if err != nil {
			if strings.Contains(err.Error(), token.Reveal()[len(TokenPrefix)+1:]) {
				t.Fatal("the error repeats a token")
			}
			return
		}
		for _, e := range set {
			if checkEntry(e.Name, e.Account) != nil {
				t.Fatalf("accepted an entry %+v that NewToken would refuse", e.Principal)
			}
		}
	})
}

// FuzzDecodeObject: any body gives the members of one JSON object, or a
// problem; never a panic.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{`{"name":"n"}`, `{"a":1,"a":2}`, `[]`, `{} {}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{`, "", `"x"`, `{"\u0000":1}`, `{"name":"\ud800"}`, "{\"name\":\"\xff\"}"} {
		f.Add(s, "application/json")
	}
	f.Add(`{"name":"n"}`, "application/json; charset=latin1")
	f.Fuzz(func(t *testing.T, body, contentType string) {
		r := httptest.NewRequest("POST", "/v1/keys", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		members, prob := decodeObject(r, true, "application/json")
		if prob != nil && members != nil {
			t.Fatal("both members and a problem")
		}
		if members != nil && keystore.CheckJSONText([]byte(body)) != nil {
			t.Fatal("members of a body with text that decoding would replace")
		}
		if prob != nil && prob.kind.status != http.StatusBadRequest && prob.kind.status != http.StatusUnsupportedMediaType &&
			prob.kind.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", prob.kind.status)
		}
	})
}
