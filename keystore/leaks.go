package keystore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"
)

// What a leak report does to a key it names.
const (
	LeakRevoke  = "revoke"  // revoke the key (the default)
	LeakDisable = "disable" // disable it, so that an operator can enable it again
	LeakNotify  = "notify"  // change nothing: audit it and send key.leaked
)

// LeakPolicies are the accepted leak policies.
var LeakPolicies = []string{LeakRevoke, LeakDisable, LeakNotify}

// ErrReplayed: a leak report with this exact body was received already.
var ErrReplayed = errors.New("keystore: this leak report was received already")

// MaxLeakedTokens bounds the tokens of one leak report.
const MaxLeakedTokens = 500

// LeakedToken is one token a leak report names, and where it was found.
type LeakedToken struct {
	Token  string // as reported; only a well-formed keygate key is looked up
	Type   string // the reporter's name for the token's kind
	URL    string // where it was found, "" if not said
	Source string // what held it (GitHub's "content", "commit", …), "" if not said
}

// LeakReport is one report of leaked tokens.
type LeakReport struct {
	Reporter string // "github", "gitlab": who sent it (the audit actor is "leak:" and this)
	Body     []byte // the report as received: a second report with the same body is a replay
	Tokens   []LeakedToken
	Policy   string // LeakRevoke, LeakDisable or LeakNotify
}

// LeakOutcome says what a report did. It is for logs and metrics: the
// reporter's answer never depends on it.
type LeakOutcome struct {
	Tokens   int // tokens in the report
	Ignored  int // not a well-formed keygate key (another format, a wrong checksum): never looked up
	Unknown  int // well formed, but no key of this store
	Found    int // keys of this store
	Revoked  int // revoked by this report
	Disabled int // disabled by this report
}

// HandleLeak handles a leak report in one transaction: the report is
// noted by the digest of its body (a replay is ErrReplayed and changes
// nothing); every token that is a well-formed keygate key is looked up by
// its digest, and its key is revoked, disabled or left as it is (policy),
// each change audited and announced as usual; then an audit event "leak"
// saying where the token was found, and a key.leaked event, go out for
// every key found, whatever its state.
func (s *Store) HandleLeak(ctx context.Context, r LeakReport) (LeakOutcome, error) {
	out := LeakOutcome{Tokens: len(r.Tokens)}
	switch {
	case !slices.Contains(LeakPolicies, r.Policy):
		return out, invalidf("policy", "must be %s, %s or %s", LeakRevoke, LeakDisable, LeakNotify)
	case len(r.Tokens) == 0:
		return out, invalid("tokens", "the report names no token")
	case len(r.Tokens) > MaxLeakedTokens:
		return out, invalidf("tokens", "at most %d tokens in one report, got %d", MaxLeakedTokens, len(r.Tokens))
	}
	type candidate struct {
		token   LeakedToken
		digests []Digest
	}
	var candidates []candidate
	var all []Digest
	for _, t := range r.Tokens {
		secret, err := ParseSecret(t.Token)
		if err != nil {
			out.Ignored++
			continue
		}
		ds := s.hasher.Candidates(secret)
		candidates = append(candidates, candidate{token: t, digests: ds})
		all = append(all, ds...)
	}
	actor := "leak:" + r.Reporter
	body := sha256.Sum256(r.Body)
	err := s.write(ctx, "leak report", func(tx Tx, now time.Time) error {
		o := LeakOutcome{Tokens: out.Tokens, Ignored: out.Ignored}
		fresh, err := tx.NoteLeakReport(ctx, Digest(body), r.Reporter, now)
		if err != nil {
			return err
		}
		if !fresh {
			return ErrReplayed
		}
		stored, err := tx.StoredDigests(ctx, all)
		if err != nil {
			return err
		}
		for _, c := range candidates {
			id := ""
			for _, d := range c.digests {
				if id = stored[d]; id != "" {
					break
				}
			}
			if id == "" {
				o.Unknown++
				continue
			}
			o.Found++
			action, err := s.leaked(ctx, tx, id, r.Policy, actor, now, c.token)
			if err != nil {
				return err
			}
			switch action {
			case "revoke":
				o.Revoked++
			case "disable":
				o.Disabled++
			}
		}
		out = o
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrReplayed) {
			return out, ErrReplayed
		}
		return out, err
	}
	return out, nil
}

// leaked applies policy to the key with the given id, found in a leak
// report, and records the leak; it returns what it did to the key
// ("revoke", "disable" or "none").
func (s *Store) leaked(ctx context.Context, tx Tx, id, policy, actor string, now time.Time, t LeakedToken) (string, error) {
	k, err := tx.Lock(ctx, id)
	if err != nil {
		return "", err
	}
	where := map[string]any{"url": t.URL, "source": t.Source, "type": t.Type}
	action := "none"
	var c KeyChange
	switch {
	case policy == LeakRevoke && k.RevokedAt == nil:
		action, c = "revoke", KeyChange{RevokedAt: To(&now)}
	case policy == LeakDisable && k.RevokedAt == nil && k.DisabledAt == nil:
		action, c = "disable", KeyChange{DisabledAt: To(&now)}
	}
	if action != "none" {
		detail := map[string]any{"reason": "leaked", "leak": where}
		if k, err = s.apply(ctx, tx, id, c, Event{Action: action, Actor: actor, At: now, Detail: detail}); err != nil {
			return "", err
		}
	}
	where["policy"], where["action"] = policy, action
	return action, s.record(ctx, tx, k, Event{Action: "leak", Actor: actor, At: now, Detail: where})
}

// LookupKey returns the key whose secret is secret, whatever its state
// (keys whoami, POST /v1/keys/lookup): ErrNotFound for a secret that is
// not a key of this store. secret must be well formed (ParseSecret).
func (s *Store) LookupKey(ctx context.Context, secret Secret) (*Key, error) {
	for _, d := range s.hasher.Candidates(secret) {
		r, err := s.db.Lookup(ctx, d)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keystore: lookup by value: %w", err)
		}
		k, err := s.db.Get(ctx, r.ID())
		if err != nil {
			return nil, fmt.Errorf("keystore: lookup by value: %w", err)
		}
		return k, nil
	}
	return nil, ErrNotFound
}
