package authz

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/maypok86/otter/v2"

	"github.com/keygate/keygate/keystore"
)

// Field is one HTTP header: a lower-case name and its value.
type Field struct {
	Name, Value string
}

// Identity is what an allowed request carries upstream, whatever the
// transport: the identity headers and the headers to remove first.
type Identity struct {
	// Headers are the identity headers in a fixed order: key id, account
	// id, scopes (comma-separated), module, and dry-run (the outcome a
	// dry-run denial would have had). A header has an empty Value when there
	// is nothing to say (no scopes, no module, not a dry-run denial, no
	// valid key); an adapter removes such a header, or sends it empty, but
	// never lets a client-sent value through.
	Headers [NumIdentityHeaders]Field
	// Meta are the metadata headers (Config.MetaHeaders), in their order,
	// with an empty Value when the key has no such entry: like an empty
	// identity header, one an adapter removes or sends empty.
	Meta []Field
	// Remove lists the headers to remove upstream that are not identity
	// or metadata headers: the ones that carried the key (unless
	// KeepCredentials) and client-sent headers with the identity prefix.
	Remove []string
}

// The identity headers, as indexes into Identity.Headers.
const (
	IdentityKeyID = iota
	IdentityAccountID
	IdentityScopes
	IdentityModule
	// IdentityDryRun is set only on dry-run denials; a client-sent copy is
	// removed like any forged identity header (Identity.Remove).
	IdentityDryRun
	NumIdentityHeaders
)

// Identity returns what d, an allow or a dry-run denial from Decide,
// carries upstream.
func (s *Server) Identity(d *Decision) Identity {
	var id Identity
	for i, name := range s.IdentityHeaders() {
		id.Headers[i].Name = name
	}
	if k := d.Key; k != nil {
		id.Headers[IdentityKeyID].Value = k.ID()
		id.Headers[IdentityAccountID].Value = k.AccountID()
		id.Headers[IdentityScopes].Value = k.JoinedScopes()
	}
	id.Headers[IdentityModule].Value = d.Module
	if d.DryRun {
		id.Headers[IdentityDryRun].Value = d.Outcome.String()
	}
	if len(s.metaHeaders) > 0 {
		id.Meta = make([]Field, len(s.metaHeaders))
		for i, h := range s.metaHeaders {
			id.Meta[i].Name = h.name
			if d.Key != nil {
				id.Meta[i].Value, _ = d.Key.Meta(h.key)
			}
		}
	}
	if !s.keepCredentials {
		for i := range s.keyHeaders {
			if d.carriers&(1<<i) != 0 {
				id.Remove = append(id.Remove, s.keyHeaders[i].name)
			}
		}
	}
	for _, name := range d.spoofed {
		switch name {
		case s.names.keyID, s.names.accountID, s.names.scopes, s.names.module:
			// identity headers: set or removed by every adapter
		default:
			if !slices.ContainsFunc(s.metaHeaders, func(h metaHeader) bool { return h.name == name }) {
				id.Remove = append(id.Remove, name) // metadata headers are set or removed too
			}
		}
	}
	return id
}

// CheckMetaHeaders reports what NewServer would find wrong with
// Config.MetaHeaders, as a *ConfigError.
func CheckMetaHeaders(keys []string) error {
	_, err := newMetaHeaders(keys, DefaultIdentityPrefix)
	return err
}

// newMetaHeaders checks Config.MetaHeaders and names their headers.
func newMetaHeaders(keys []string, identityPrefix string) ([]metaHeader, error) {
	if len(keys) > keystore.MaxMetadata {
		return nil, configError("MetaHeaders", fmt.Sprintf("at most %d, got %d", keystore.MaxMetadata, len(keys)))
	}
	var out []metaHeader
	for _, k := range keys {
		if err := keystore.ValidateMetaKey(k); err != nil {
			return nil, configError("MetaHeaders", err.Error())
		}
		h := metaHeader{key: k, name: identityPrefix + "meta-" + strings.ReplaceAll(k, "_", "-")}
		if slices.Contains(out, h) {
			return nil, configError("MetaHeaders", fmt.Sprintf("%q is listed twice", k))
		}
		out = append(out, h)
	}
	return out, nil
}

// IdentityHeaders are the names of the identity headers, in Identity's
// order.
func (s *Server) IdentityHeaders() [NumIdentityHeaders]string {
	return [NumIdentityHeaders]string{s.names.keyID, s.names.accountID, s.names.scopes, s.names.module, s.names.dryRun}
}

// Denial is what the client receives when a request is refused, whatever
// the transport: the status, the headers and the JSON body
// {"error":{"code":"…","message":"…"}}.
type Denial struct {
	Outcome Outcome
	Status  int
	// Headers are content-type and cache-control, and www-authenticate on
	// a 401 or retry-after on a 503.
	Headers []Field
	Body    string
}

// denials are built once; they are shared and never modified.
var denials = func() (d [numOutcomes]*Denial) {
	for o := range numOutcomes {
		d[o] = newDenial(o, o.info().retryAfter)
	}
	return d
}()

// Denial is the refusal with outcome o as a server with the default
// settings renders it (Server.Denial is the server's own); the same shared
// value every time, which callers must not modify.
func (o Outcome) Denial() *Denial {
	if o >= numOutcomes {
		o = Unavailable
	}
	return denials[o]
}

// Denial is the refusal with outcome o as s renders it: Outcome.Denial,
// but for too_many_failures with the Retry-After of s's FailureLimit. The
// same shared value every time, which callers must not modify.
func (s *Server) Denial(o Outcome) *Denial {
	if o >= numOutcomes {
		o = Unavailable
	}
	return s.denials[o]
}

func newDenial(o Outcome, retryAfter string) *Denial {
	info := o.info()
	headers := []Field{{"content-type", "application/json"}, {"cache-control", "no-store"}}
	if info.challenge != "" {
		headers = append(headers, Field{"www-authenticate", info.challenge})
	}
	if retryAfter != "" {
		headers = append(headers, Field{"retry-after", retryAfter})
	}
	return &Denial{Outcome: o, Status: info.status, Headers: headers, Body: denialBody(info.name, info.message)}
}

// Saying returns d with message as its error.message instead of the
// outcome's: for an adapter that can tell the client more exactly what is
// wrong (a forward-auth request without the forwarded URI). The message
// is the caller's constant text, never anything of the request. The
// headers are shared with d.
func (d *Denial) Saying(message string) *Denial {
	return &Denial{Outcome: d.Outcome, Status: d.Status, Headers: d.Headers, Body: denialBody(d.Outcome.String(), message)}
}

// denialBody is the JSON body {"error":{"code":…,"message":…}}.
func denialBody(code, message string) string {
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b.Error.Code, b.Error.Message = code, message
	body, err := json.Marshal(b)
	if err != nil {
		panic(err) // strings always encode
	}
	return string(body)
}

// Grants remembers a transport's rendering of allow responses, so that
// the common allow costs a map lookup instead of building and encoding a
// response. A rendering depends on the key record's id and version (every
// lifecycle change gives a new version), the module and which headers
// carried the key; a request that forged identity headers gets a
// rendering of its own, built each time. Safe for concurrent use.
type Grants[T any] struct {
	cache *otter.Cache[grantKey, T]
}

// grantKey identifies an allow response that does not depend on anything
// else in the request.
type grantKey struct {
	keyID    string // "" for a dry-run denial without a valid key
	version  int64  // UpdatedAt in unix microseconds
	module   string
	carriers uint8
	dryRun   Outcome // the outcome of a dry-run denial, Allow otherwise
}

// GrantCacheSize bounds the renderings a Grants keeps.
const GrantCacheSize = 16 << 10

// NewGrants returns an empty Grants.
func NewGrants[T any]() *Grants[T] {
	return &Grants[T]{cache: otter.Must(&otter.Options[grantKey, T]{MaximumSize: GrantCacheSize, Executor: keystore.RunInline})}
}

// Get returns the rendering of d (an allow, or a dry-run denial), calling build for one it does
// not have (or, for a request that forged identity headers, every time).
// What build returns is shared by every request with the same key
// version, module and key headers: it must not be modified.
func (g *Grants[T]) Get(d *Decision, build func(Decision) T) T {
	if d.Forged() {
		return build(*d)
	}
	gk := grantKey{module: d.Module, carriers: d.carriers}
	if d.Key != nil {
		gk.keyID, gk.version = d.Key.ID(), d.Key.Version()
	}
	if d.DryRun {
		gk.dryRun = d.Outcome
	}
	if r, ok := g.cache.GetIfPresent(gk); ok {
		return r
	}
	// What is kept outlives the request, whose strings an adapter may
	// read in place (extauthz): the module is the policy's own string for
	// a known module, but a dry-run denial names an unknown one as asked.
	kept := *d
	kept.Module = strings.Clone(d.Module)
	gk.module = kept.Module
	r := build(kept)
	g.cache.Set(gk, r)
	return r
}

// Len is the number of renderings kept (an estimate).
func (g *Grants[T]) Len() int { return g.cache.EstimatedSize() }
