package admin

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/keygate/keygate/keystore"
)

// LeakIntake receives reports of leaked keys on POST /v1/leaks, which
// takes no admin token: each report proves where it comes from by its own
// means. GitHub's secret scanning partner alerts are signed with ECDSA
// P-256 over the raw body (Github-Public-Key-Identifier and
// Github-Public-Key-Signature headers), verified with GitHubKeys; GitLab's
// Token Revocation API requests carry a pre-shared token in the
// Authorization header.
type LeakIntake struct {
	// GitHubKeys are GitHub's secret scanning public keys by identifier
	// (LoadGitHubKeys); none: GitHub's reports are refused.
	GitHubKeys map[string]*ecdsa.PublicKey
	// GitLabToken is the token GitLab sends; "": GitLab's requests are
	// refused.
	GitLabToken string
	// Policy is what a report does to a key of this store it names:
	// keystore.LeakRevoke, LeakDisable or LeakNotify.
	Policy string
	// TokenTypes are the type names GitLab's revocable_token_types
	// endpoint lists (the reports' type member is not otherwise
	// checked: the token's own format decides).
	TokenTypes []string
}

// LoadGitHubKeys reads GitHub's secret scanning public keys from a file in
// the format GitHub serves them (GET
// https://api.github.com/meta/public_keys/secret_scanning): {"public_keys":
// [{"key_identifier": …, "key": "-----BEGIN PUBLIC KEY-----…"}]}.
func LoadGitHubKeys(path string) (map[string]*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		PublicKeys []struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: not GitHub's public keys document: %w", path, err)
	}
	if len(doc.PublicKeys) == 0 {
		return nil, fmt.Errorf("%s: no public_keys", path)
	}
	out := map[string]*ecdsa.PublicKey{}
	for i, k := range doc.PublicKeys {
		block, _ := pem.Decode([]byte(k.Key))
		if block == nil || k.KeyIdentifier == "" {
			return nil, fmt.Errorf("%s: public_keys[%d]: want a key_identifier and a PEM public key", path, i)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		ec, ok := pub.(*ecdsa.PublicKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("%s: public_keys[%d]: not an ECDSA public key", path, i)
		}
		out[k.KeyIdentifier] = ec
	}
	return out, nil
}

// Reporters of leaks.
const (
	reporterGitHub = "github"
	reporterGitLab = "gitlab"
)

// receiveLeaks handles a leak report: GitHub's or GitLab's, told apart by
// how it proves its origin. The answer is the same whether the tokens are
// keys of this store or not.
func (s *Server) receiveLeaks(w http.ResponseWriter, r *http.Request, _ Principal) *problem {
	li := s.events.Leaks
	if li == nil {
		return newProblem(probNotFound, "The leak intake is not configured (--leaks-policy and --leaks-github-keys-file or --leaks-gitlab-token-file).")
	}
	reporter, prob := s.leakReporter(r, li)
	if prob != nil {
		return prob
	}
	body, _ := readAll(r)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return newProblem(probMediaType, "Send the report as application/json.")
	}
	tokens, prob := parseLeakReport(body)
	if prob != nil {
		return prob
	}
	out, err := s.store.HandleLeak(r.Context(), keystore.LeakReport{Reporter: reporter, Body: body, Tokens: tokens, Policy: li.Policy})
	switch {
	case errors.Is(err, keystore.ErrReplayed):
		s.logger.Warn("admin: a leak report was received again; nothing was done", "reporter", reporter)
		return newProblem(probConflict, "This report was received already; nothing was done again.")
	case err != nil:
		if ves := validationErrors(err); len(ves) > 0 {
			return newProblem(probInvalid, "The report is not valid: "+ves[0].Error()+".")
		}
		return s.storeProblem(err)
	}
	s.logger.Warn("admin: leak report", slog.String("reporter", reporter), slog.Int("tokens", out.Tokens), slog.Int("ignored", out.Ignored),
		slog.Int("unknown", out.Unknown), slog.Int("found", out.Found), slog.Int("revoked", out.Revoked), slog.Int("disabled", out.Disabled),
		slog.String("policy", li.Policy))
	if reporter == reporterGitLab {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	// GitHub reads an optional array of labels: none is given, so that
	// the answer never says which tokens were this store's.
	writeJSON(w, http.StatusOK, []any{})
	return nil
}

// leakReporter checks how r proves its origin and returns who sent it.
// Every failure counts against its source's budget of failed
// credentials, like a bad admin token.
func (s *Server) leakReporter(r *http.Request, li *LeakIntake) (string, *problem) {
	source, now := sourceAddr(r), s.now()
	if s.failures.Over(source, now) {
		return "", newProblem(probThrottled, "This address sent too many credentials that are not valid; try again later.").
			with("Retry-After", s.limit.RetryAfter())
	}
	reporter, ok := "", false
	detail := "Sign the report as GitHub does (Github-Public-Key-Identifier, Github-Public-Key-Signature), or send GitLab's token in Authorization."
	switch {
	case r.Header.Get("Github-Public-Key-Identifier") != "" || r.Header.Get("Github-Public-Key-Signature") != "":
		reporter, detail = reporterGitHub, "The report's signature does not verify with a configured GitHub public key."
		ok = verifyGitHub(r, li.GitHubKeys)
	case r.Header.Get("Authorization") != "":
		reporter, detail = reporterGitLab, "The token in Authorization is not the configured GitLab token."
		ok = li.GitLabToken != "" && checkGitLabToken(r, li.GitLabToken)
	}
	if !ok {
		s.failures.Add(source, now)
		return "", newProblem(probUnauth, detail)
	}
	return reporter, nil
}

// verifyGitHub verifies GitHub's ECDSA P-256 SHA-256 signature (base64 of
// ASN.1 DER) over the raw body, with the key the identifier names.
func verifyGitHub(r *http.Request, keys map[string]*ecdsa.PublicKey) bool {
	key := keys[r.Header.Get("Github-Public-Key-Identifier")]
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get("Github-Public-Key-Signature"))
	if key == nil || err != nil || len(r.Header.Values("Github-Public-Key-Signature")) != 1 {
		return false
	}
	body, err := readAll(r)
	if err != nil {
		return false
	}
	digest := sha256.Sum256(body)
	return ecdsa.VerifyASN1(key, digest[:], sig)
}

// checkGitLabToken compares the Authorization header (the token, or
// "Bearer" and the token) with want in constant time.
func checkGitLabToken(r *http.Request, want string) bool {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return false
	}
	got := strings.TrimSpace(values[0])
	if scheme, rest, ok := strings.Cut(got, " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(rest)
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// readAll returns the (buffered) body and leaves it readable again.
func readAll(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

// parseLeakReport reads a report: a JSON array of objects, each with a
// token and optionally type, url (GitHub) or location (GitLab), and source.
func parseLeakReport(body []byte) ([]keystore.LeakedToken, *problem) {
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, newProblem(probInvalid, "The report must be a JSON array of objects.")
	}
	if len(items) == 0 || len(items) > keystore.MaxLeakedTokens {
		return nil, newProblem(probInvalid, fmt.Sprintf("The report must name 1 to %d tokens.", keystore.MaxLeakedTokens))
	}
	out := make([]keystore.LeakedToken, len(items))
	for i, item := range items {
		field := func(name string, dst *string) bool {
			v, ok := item[name]
			return !ok || string(v) == "null" || json.Unmarshal(v, dst) == nil
		}
		t := &out[i]
		if !field("token", &t.Token) || !field("type", &t.Type) || !field("url", &t.URL) || !field("location", &t.URL) ||
			!field("source", &t.Source) {
			return nil, newProblem(probInvalid, fmt.Sprintf("Item %d of the report: token, type, url, location and source must be strings.", i))
		}
		if t.Token == "" {
			return nil, newProblem(probInvalid, fmt.Sprintf("Item %d of the report has no token.", i))
		}
		t.URL, t.Type, t.Source = clip(t.URL, 1000), clip(t.Type, 100), clip(t.Source, 100)
	}
	return out, nil
}

// clip bounds a reported string kept in the audit trail.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// revocableTokenTypes is GitLab's GET /v1/revocable_token_types, with its
// token.
func (s *Server) revocableTokenTypes(w http.ResponseWriter, r *http.Request, _ Principal) *problem {
	li := s.events.Leaks
	if li == nil || li.GitLabToken == "" {
		return newProblem(probNotFound, "The GitLab leak intake is not configured (--leaks-gitlab-token-file).")
	}
	reporter, prob := s.leakReporter(r, li)
	if prob != nil {
		return prob
	}
	if reporter != reporterGitLab {
		return newProblem(probUnauth, "Send GitLab's token in Authorization.")
	}
	writeJSON(w, http.StatusOK, map[string]any{"types": li.TokenTypes})
	return nil
}
