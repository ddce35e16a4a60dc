package admin_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

func TestNewToken(t *testing.T) {
	t.Parallel()
	token, entry, err := admin.NewToken("console backend", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.ParseSecret(token.Reveal()); err != nil || !strings.HasPrefix(token.Reveal(), "kgadm_") {
		t.Fatalf("token %v does not parse as kgadm_…", err)
	}
	sum := sha256.Sum256([]byte(token.Reveal()))
	if entry.SHA256 != hex.EncodeToString(sum[:]) || entry.Name != "console backend" || entry.Account != "acme" {
		t.Fatalf("entry %+v", entry)
	}
	for _, c := range []struct{ name, account string }{{"", ""}, {" ", ""}, {strings.Repeat("n", 101), ""}, {"a\nb", ""}, {"n", "a\x00"},
		{"n", " acme"}, {"n", "acme "}, {"n", "acme,beta"}, {"n", "  "}, {"ops\u200b", ""}, {"n\xff", ""}} {
		if _, _, err := admin.NewToken(c.name, c.account); err == nil {
			t.Errorf("NewToken(%q, %q) accepted", c.name, c.account)
		}
	}
}

func TestLoadTokensErrors(t *testing.T) {
	t.Parallel()
	hash := strings.Repeat("ab", 32)
	token, entry, _ := admin.NewToken("n", "")
	cases := []struct {
		name, file string
		line       int
		msg        string
	}{
		{"empty", "", 1, "empty file"},
		{"a mapping", "name: x\n", 1, "want a list"},
		{"syntax", "- name: x\n  sha256: [\n", 2, ""},
		{"missing sha256", "- name: x\n", 1, "sha256 is missing"},
		{"missing name", "- sha256: " + hash + "\n", 1, "name is missing"},
		{"unknown key", "- name: x\n  sha256: " + hash + "\n  acount: a\n", 3, "unknown key"},
		{"duplicate key", "- name: x\n  name: y\n  sha256: " + hash + "\n", 2, "twice"},
		{"short hash", "- name: x\n  sha256: abc\n", 2, "64 hex digits"},
		{"the token itself", "- name: x\n  sha256: " + token.Reveal() + "\n", 2, "never the token itself"},
		{"a list as name", "- name: [x]\n  sha256: " + hash + "\n", 1, "name: want a string"},
		{"null account", "- name: x\n  sha256: " + hash + "\n  account: null\n", 3, "account: want a string"},
		{"no account value", "- name: x\n  sha256: " + hash + "\n  account:\n", 3, "account: want a string"},
		{"empty account", "- name: x\n  sha256: " + hash + "\n  account: \"\"\n", 3, "account: must not be empty"},
		{"empty account, single quotes", "- name: x\n  sha256: " + hash + "\n  account: ''\n", 3, "account: must not be empty"},
		{"empty account, flow style", "- {name: x, sha256: " + hash + ", account: ''}\n", 1, "account: must not be empty"},
		{"blank account", "- name: x\n  sha256: " + hash + "\n  account: '  '\n", 3, "account: must not start or end with white space"},
		{"account with a leading space", "- name: x\n  sha256: " + hash + "\n  account: ' acme'\n", 3, "account: must not start or end"},
		{"account with a trailing space", "- name: x\n  sha256: " + hash + "\n  account: \"acme \"\n", 3, "account: must not start or end"},
		{"account with a comma", "- name: x\n  sha256: " + hash + "\n  account: 'acme,beta'\n", 3, "account: must hold only letters"},
		{"an unexpanded template", "- name: x\n  sha256: " + hash + "\n  account: ${TENANT}\n", 3, "account: must start with a letter or digit"},
		{"account with a control character", "- name: x\n  sha256: " + hash + "\n  account: \"ac\\x01me\"\n", 3, "account: must hold only letters"},
		{"name with a bidi override", "- name: \"ops\\u202e\"\n  sha256: " + hash + "\n", 1, "name: must not contain U+202E"},
		{"blank name", "- name: ' '\n  sha256: " + hash + "\n", 1, "name: must not be empty"},
		{"same token twice", "- name: x\n  sha256: " + hash + "\n- name: y\n  sha256: " + hash + "\n", 3, "listed on line 1"},
		{"an alias", "- &a {name: x, sha256: " + hash + "}\n- *a\n", 1, ""},
		{"two documents", "[]\n---\n[]\n", 2, "more than one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.yaml")
			os.WriteFile(path, []byte(c.file), 0o600)
			_, err := admin.LoadTokens(path)
			var tfe *admin.TokenFileError
			if !errors.As(err, &tfe) || tfe.File != path || tfe.Line != c.line || !strings.Contains(tfe.Msg, c.msg) {
				t.Fatalf("LoadTokens = %v; want %s:%d: …%s…", err, path, c.line, c.msg)
			}
			if strings.Contains(err.Error(), token.Reveal()) || strings.Contains(err.Error(), token.Reveal()[6:]) {
				t.Fatal("the error repeats the token")
			}
		})
	}
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	os.WriteFile(path, []byte("# none yet\n[]\n"), 0o600)
	if tokens, err := admin.LoadTokens(path); err != nil || tokens.Len() != 0 {
		t.Fatalf("an empty list: %v", err)
	}
	os.WriteFile(path, []byte("- name: n\n  sha256: "+entry.SHA256+"\n- {name: m, sha256: '"+hash+"', account: acme}\n"), 0o600)
	if tokens, err := admin.LoadTokens(path); err != nil || tokens.Len() != 2 || tokens.Path() != path {
		t.Fatalf("two tokens: %v", err)
	}
	if _, err := admin.LoadTokens(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}
