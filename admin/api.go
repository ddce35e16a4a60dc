package admin

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// DefaultGrace is how long a rotated key's old secret keeps working when
// the rotation does not say (the CLI's default too).
const DefaultGrace = 24 * time.Hour

// createFields are the members of POST /v1/keys, in the document's order.
var createFields = []string{"account_id", "name", "description", "scopes", "allowed_cidrs", "metadata", "limits", "quota", "expires_in", "expires_at", "no_expiry"}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	members, prob := decodeObject(r, false, "application/json")
	if prob != nil {
		return prob
	}
	var errs fieldErrors
	unknownFields(members, &errs, createFields)
	var req struct {
		AccountID, Name, Description, Quota string
		Scopes, AllowedCIDRs, Limits        []string
		Metadata                            map[string]string
	}
	decodeMember(members, "account_id", &req.AccountID, &errs, "a string")
	decodeMember(members, "name", &req.Name, &errs, "a string")
	decodeMember(members, "description", &req.Description, &errs, "a string")
	decodeMember(members, "scopes", &req.Scopes, &errs, "an array of strings")
	decodeMember(members, "allowed_cidrs", &req.AllowedCIDRs, &errs, "an array of CIDR prefixes or addresses")
	decodeMember(members, "metadata", &req.Metadata, &errs, "an object of strings")
	decodeMember(members, "limits", &req.Limits, &errs, `an array of limits like "100/s" or "50000/d,burst=500"`)
	decodeMember(members, "quota", &req.Quota, &errs, `a quota like "1000000/month" or "50000/day"`)

	if present(members, "account_id") && !errs.has("account_id") {
		// Given, it follows the rule, also where a bound token would
		// have chosen for it: "" is not the token's account.
		addValidation(&errs, keystore.ValidateAccountID(req.AccountID))
	}
	switch {
	case p.Account != "" && present(members, "account_id") && !errs.has("account_id") && req.AccountID != p.Account:
		return newProblem(probForbidden, "This admin token manages one account's keys; it may not create keys for another.")
	case p.Account != "" && !present(members, "account_id"):
		req.AccountID = p.Account
	case !errs.has("account_id") && !present(members, "account_id"):
		errs.add("account_id", "required: the account the key belongs to")
	}

	params := keystore.CreateParams{AccountID: req.AccountID, Name: req.Name, Description: req.Description, Scopes: req.Scopes,
		AllowedCIDRs: req.AllowedCIDRs, Metadata: req.Metadata, Limits: req.Limits, Quota: req.Quota, Actor: p.Actor()}
	var expiryField string
	if params.Expiry, expiryField = parseExpiry(members, &errs); expiryField == "" {
		expiryField = "expires_in" // the default lifetime's
	}
	s.checkScopes(req.Scopes, nil, &errs)
	if !errs.has("name") && !present(members, "name") {
		errs.add("name", "required: a name people recognise the key by")
	}
	addStoreErrors(&errs, s.store.CheckCreate(params, s.now()), expiryField)
	if prob := errs.problem(createFields...); prob != nil {
		return prob
	}
	k, secret, err := s.store.Create(r.Context(), params)
	if err != nil {
		// The expiry is judged again at the database's clock.
		if addStoreErrors(&errs, err, expiryField); len(errs) > 0 {
			return errs.problem(createFields...)
		}
		return s.storeProblem(err)
	}
	w.Header().Set("Location", "/v1/keys/"+k.ID)
	writeJSON(w, http.StatusCreated, NewSecretKey(k, secret, s.now()))
	return nil
}

// checkScopes refuses the scopes that could never work (ScopeProblem),
// but for those in held, which the key has already: a key keeps its scopes
// when the policy changes.
func (s *Server) checkScopes(scopes, held []string, errs *fieldErrors) {
	for i, scope := range scopes {
		if slices.Contains(held, scope) {
			continue
		}
		if problem := ScopeProblem(s.policy, scope); problem != "" {
			errs.add("scopes["+strconv.Itoa(i)+"]", problem)
		}
	}
}

// addStoreErrors records the store's verdict on a create, a change or a
// rotation in the API's words: its "expiry" is the member that chose the
// expiry, and its "scopes" only when no scope has a problem of its own
// already.
func addStoreErrors(errs *fieldErrors, err error, expiryField string) {
	for _, ve := range validationErrors(err) {
		switch {
		case ve.Field == "expiry" && expiryField != "":
			errs.add(expiryField, ve.Problem)
		case ve.Field == "scopes" && errs.hasPrefix("scopes"):
		default:
			errs.add(ve.Field, ve.Problem)
		}
	}
}

// addValidation records the keystore validation errors in err.
func addValidation(errs *fieldErrors, err error) {
	for _, ve := range validationErrors(err) {
		errs.add(ve.Field, ve.Problem)
	}
}

// validationErrors lists the *keystore.ValidationError in err, one per
// field, whether err is one of them or several joined.
func validationErrors(err error) []*keystore.ValidationError {
	var out []*keystore.ValidationError
	var walk func(error)
	walk = func(err error) {
		var ve *keystore.ValidationError
		switch e := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		default:
			if errors.As(err, &ve) {
				out = append(out, ve)
			}
		}
	}
	walk(err)
	return out
}

func present(members map[string]json.RawMessage, name string) bool {
	v, ok := members[name]
	return ok && string(v) != "null"
}

// decodeMember decodes members[name] into dst, recording a field error
// saying it must be want when it is of the wrong type. Absent and null
// members leave dst as it is.
func decodeMember(members map[string]json.RawMessage, name string, dst any, errs *fieldErrors, want string) {
	if !present(members, name) {
		return
	}
	if err := json.Unmarshal(members[name], dst); err != nil {
		errs.add(name, "must be "+want)
	}
}

// decodeDuration decodes the member name, a keystore duration (like
// "24h" or "7d"), into *d, recording a field error saying it must be want
// when it is not a string, and invalid when it does not parse or is over
// most. Absent and null members leave *d as it is.
func decodeDuration(members map[string]json.RawMessage, name string, d *time.Duration, errs *fieldErrors, want string, most time.Duration, invalid string) {
	var text string
	decodeMember(members, name, &text, errs, want)
	if !present(members, name) || errs.has(name) {
		return
	}
	v, err := keystore.ParseDuration(text)
	if err != nil || v > most {
		errs.add(name, invalid)
		return
	}
	*d = v
}

func unknownFields(members map[string]json.RawMessage, errs *fieldErrors, known []string) {
	for name := range members {
		if !slices.Contains(known, name) {
			errs.add(fieldName(name), "unknown field")
		}
	}
}

// fieldName keeps an unknown field's name printable and short.
func fieldName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len([]rune(s)) > 64 {
		s = string([]rune(s)[:64]) + "…"
	}
	return s
}

var listParams = []string{"account_id", "status", "name", "limit", "cursor"}

// KeyList is the body of GET /v1/keys.
type KeyList struct {
	Items      []Key   `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	query, errs, prob := readQuery(r, listParams)
	if prob != nil {
		return prob
	}
	// A parameter already wrong (given twice) is not read further.
	param := func(name string) (string, bool) { return query.Get(name), query.Has(name) && !errs.has(name) }
	var req ListRequest
	if v, ok := param("account_id"); ok {
		if v == "" { // "" is not "every account": Check reads it so
			addValidation(&errs, keystore.ValidateAccountID(v))
		}
		req.AccountID = v
	}
	if v, ok := param("status"); ok {
		f, known := ParseStatus(v)
		if !known {
			errs.add("status", "must be "+StatusNames)
		}
		req.Status = f
	}
	if v, ok := param("name"); ok {
		if v == "" {
			errs.add("name", "must not be empty: leave it out to list keys of every name")
		}
		req.Name = v
	}
	if v, ok := param("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs.add("limit", limitProblem)
		} else {
			req.Limit = n
		}
	}
	if v, ok := param("cursor"); ok {
		if v == "" {
			errs.add("cursor", cursorProblem)
		}
		req.Cursor = v
	}
	addValidation(&errs, req.Check())
	if prob := errs.problem(listParams...); prob != nil {
		return prob
	}
	switch {
	case p.Account != "" && req.AccountID != "" && req.AccountID != p.Account:
		return newProblem(probForbidden, "This admin token manages one account's keys; it may not list another's.")
	case p.Account != "":
		req.AccountID = p.Account
	}
	page, err := ListKeys(r.Context(), s.store, req)
	if err != nil {
		return s.storeProblem(err)
	}
	out := KeyList{Items: make([]Key, 0, len(page.Keys)), NextCursor: optional(page.NextCursor)}
	now := s.now()
	for _, k := range page.Keys {
		out.Items = append(out.Items, NewKey(k, now))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// key reads the key named by the path for p: a key of another account is
// not found, as is a malformed id.
func (s *Server) key(r *http.Request, p Principal) (*keystore.Key, *problem) {
	k, err := s.store.Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, keystore.ErrInvalid), errors.Is(err, keystore.ErrNotFound):
		return nil, notFound()
	case err != nil:
		return nil, s.storeProblem(err)
	case p.Account != "" && k.AccountID != p.Account:
		return nil, notFound()
	}
	return k, nil
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	k, prob := s.key(r, p)
	if prob != nil {
		return prob
	}
	writeJSON(w, http.StatusOK, s.keyWithQuota(r, k))
	return nil
}

var updateFields = []string{"name", "description", "scopes", "expires_in", "expires_at", "no_expiry", "allowed_cidrs", "metadata", "limits", "quota"}

// updateKey applies a JSON merge patch (RFC 7396) of name, description,
// scopes (an array replaces them), expiry (one of expires_in, expires_at
// and no_expiry, judged now), source restrictions (an array replaces them;
// null or [] removes them) and metadata (an object's members set entries,
// null members remove them; null removes them all). Scopes and expiry
// take no null: what it would mean (every module, never) is said
// explicitly, with [] and no_expiry.
func (s *Server) updateKey(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	members, prob := decodeObject(r, false, "application/merge-patch+json", "application/json")
	if prob != nil {
		return prob
	}
	var errs fieldErrors
	unknownFields(members, &errs, updateFields)
	var params keystore.UpdateParams
	if v, ok := members["name"]; ok {
		if string(v) == "null" {
			errs.add("name", "a key must have a name")
		}
		decodeMember(members, "name", &params.Name, &errs, "a string")
	}
	if v, ok := members["description"]; ok {
		params.Description = new(string) // null removes it
		if string(v) != "null" {
			decodeMember(members, "description", params.Description, &errs, "a string")
		}
	}
	if v, ok := members["scopes"]; ok {
		if string(v) == "null" {
			errs.add("scopes", "must be an array of scopes; [] lets the key use every module open to API keys")
		}
		decodeMember(members, "scopes", &params.Scopes, &errs, "an array of scopes")
	}
	for _, f := range expiryFields {
		if v, ok := members[f]; ok && string(v) == "null" {
			errs.add(f, "must not be null: to change the expiry give one of expires_in, expires_at and no_expiry: true")
		}
	}
	expiry, expiryField := parseExpiry(members, &errs)
	if expiryField != "" {
		params.Expiry = &expiry
	}
	if _, ok := members["allowed_cidrs"]; ok {
		params.AllowedCIDRs = &[]string{} // null removes them
		decodeMember(members, "allowed_cidrs", params.AllowedCIDRs, &errs, "an array of CIDR prefixes or addresses, or null")
		if !errs.has("allowed_cidrs") {
			_, err := keystore.NormalizeCIDRs(*params.AllowedCIDRs)
			addValidation(&errs, err)
		}
	}
	if v, ok := members["metadata"]; ok {
		params.Metadata = metadataPatch(v, &errs)
	}
	params.Limits = limitsPatch(members, &errs)
	if params.Name != nil && !errs.has("name") {
		addValidation(&errs, keystore.ValidateName(*params.Name))
	}
	if params.Description != nil && !errs.has("description") {
		addValidation(&errs, keystore.ValidateDescription(*params.Description))
	}
	if prob := errs.problem(updateFields...); prob != nil {
		return prob
	}
	k, prob := s.key(r, p)
	if prob != nil {
		return prob
	}
	if params.Scopes != nil {
		s.checkScopes(*params.Scopes, k.Scopes, &errs)
		if prob := errs.problem(updateFields...); prob != nil {
			return prob
		}
	}
	if params.Empty() {
		writeJSON(w, http.StatusOK, NewKey(k, s.now())) // an empty patch changes nothing
		return nil
	}
	params.Actor = p.Actor()
	k, err := s.store.Update(r.Context(), k.ID, params)
	if err != nil {
		// The expiry is judged at the database's clock, the metadata's
		// size against the key's.
		if addStoreErrors(&errs, err, expiryField); len(errs) > 0 {
			return errs.problem(updateFields...)
		}
		return s.storeProblem(err)
	}
	writeJSON(w, http.StatusOK, NewKey(k, s.now()))
	return nil
}

// revokeKey revokes: 204, and 204 again for a key already revoked, with
// no second audit event.
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	k, prob := s.key(r, p)
	if prob != nil {
		return prob
	}
	if _, err := s.store.Revoke(r.Context(), k.ID, p.Actor()); err != nil && !errors.Is(err, keystore.ErrRevoked) {
		return s.storeProblem(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

var rotateFields = []string{"grace", "expires_in", "expires_at", "no_expiry"}

// rotateKey rotates: the successor keeps the key's expiry (capped by the
// maximum lifetime) unless the body gives it one of its own.
func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	members, prob := decodeObject(r, true, "application/json")
	if prob != nil {
		return prob
	}
	var errs fieldErrors
	unknownFields(members, &errs, rotateFields)
	grace := DefaultGrace
	const graceForms = `a duration like "24h", "7d" or "0s"`
	decodeDuration(members, "grace", &grace, &errs, graceForms, math.MaxInt64, "must be "+graceForms)
	expiry, expiryField := parseExpiry(members, &errs)
	if prob := errs.problem(rotateFields...); prob != nil {
		return prob
	}
	k, prob := s.key(r, p)
	if prob != nil {
		return prob
	}
	rot, err := s.store.Rotate(r.Context(), k.ID, keystore.RotateParams{Grace: grace, Expiry: expiry, Actor: p.Actor()})
	if err != nil {
		if addStoreErrors(&errs, err, expiryField); len(errs) > 0 {
			return errs.problem(rotateFields...)
		}
		return s.storeProblem(err)
	}
	w.Header().Set("Location", "/v1/keys/"+rot.New.ID)
	writeJSON(w, http.StatusCreated, NewRotatedKey(rot, s.now()))
	return nil
}

// Event is one entry of a key's audit trail in the API.
type Event struct {
	Action string         `json:"action"`
	Actor  string         `json:"actor"`
	At     time.Time      `json:"at"`
	Detail map[string]any `json:"detail"`
}

// NewEvent is the API's (and the CLI's -o json) shape of an audit event.
func NewEvent(e keystore.Event) Event {
	if e.Detail == nil {
		e.Detail = map[string]any{}
	}
	return Event{Action: e.Action, Actor: e.Actor, At: e.At, Detail: e.Detail}
}

func (s *Server) keyEvents(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	k, prob := s.key(r, p)
	if prob != nil {
		return prob
	}
	events, err := s.store.Events(r.Context(), k.ID)
	if err != nil {
		return s.storeProblem(err)
	}
	out := struct {
		Items []Event `json:"items"`
	}{Items: make([]Event, 0, len(events))}
	for _, e := range events {
		out.Items = append(out.Items, NewEvent(e))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// Module is one module of the policy in GET /v1/modules.
type Module struct {
	Name    string   `json:"name"`
	APIKeys string   `json:"api_keys"` // "allow" or "deny"
	Paths   []string `json:"paths"`
}

func (s *Server) modules(w http.ResponseWriter, _ *http.Request, _ Principal) *problem {
	out := struct {
		Default string   `json:"default"`
		Items   []Module `json:"items"`
	}{Default: s.policy.Default.String(), Items: make([]Module, 0, len(s.policy.Modules))}
	for _, m := range s.policy.Modules {
		out.Items = append(out.Items, Module{Name: m.Name, APIKeys: m.APIKeys.String(), Paths: append([]string{}, m.Paths...)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, p Principal) *problem {
	def, max := s.store.Lifetimes()
	type keys struct {
		DefaultLifetimeSeconds int64  `json:"default_lifetime_seconds"`
		MaxLifetimeSeconds     *int64 `json:"max_lifetime_seconds"`
		NoExpiryAllowed        bool   `json:"no_expiry_allowed"`
	}
	out := struct {
		Name      string  `json:"name"`
		AccountID *string `json:"account_id"`
		Keys      keys    `json:"keys"`
	}{Name: p.Name, AccountID: optional(p.Account), Keys: keys{DefaultLifetimeSeconds: int64(def / time.Second), NoExpiryAllowed: max == 0}}
	if max > 0 {
		secs := int64(max / time.Second)
		out.Keys.MaxLifetimeSeconds = &secs
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
