package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore"
)

// EventsConfig configures the admin API's events endpoints: webhooks, the
// leak intake, and what the console shows of expiry warnings. The zero
// value serves webhooks with URLs checked only by what they say
// (keystore.ValidateEndpointURL), and no leak intake.
type EventsConfig struct {
	// CheckURL checks a webhook URL where it leads (webhook.Guard.CheckURL):
	// a refusal that is a *keystore.ValidationError is a 400 on url.
	CheckURL func(ctx context.Context, url string) error
	// ExpiryLeads are the lead times of expiry warnings, shortest first
	// (GET /v1/event-types; the console marks keys expiring within the
	// longest).
	ExpiryLeads []time.Duration
	// Leaks is the leak intake of POST /v1/leaks; nil: not configured
	// (404).
	Leaks *LeakIntake
}

// eventRoutes are the events endpoints.
func (s *Server) eventRoutes() []route {
	return []route{
		{pattern: "GET /v1/event-types", handle: s.eventTypes},
		{pattern: "GET /v1/webhooks", handle: s.listWebhooks},
		{pattern: "POST /v1/webhooks", handle: s.createWebhook},
		{pattern: "GET /v1/webhooks/{id}", handle: s.getWebhook},
		{pattern: "PATCH /v1/webhooks/{id}", handle: s.updateWebhook},
		{pattern: "DELETE /v1/webhooks/{id}", handle: s.deleteWebhook},
		{pattern: "POST /v1/webhooks/{id}/rotate-secret", handle: s.rotateWebhookSecret},
		{pattern: "GET /v1/webhooks/{id}/deliveries", handle: s.listDeliveries},
		{pattern: "POST /v1/webhooks/{id}/deliveries/{delivery}/redeliver", handle: s.redeliver},
		{pattern: "POST /v1/keys/lookup", handle: s.lookupKey},
		{pattern: "POST /v1/leaks", public: true, handle: s.receiveLeaks},
		{pattern: "GET /v1/leaks/revocable_token_types", public: true, handle: s.revocableTokenTypes},
	}
}

// Webhook is the JSON shape of a webhook endpoint. Secret is set only in
// the responses that create it or rotate its secret.
type Webhook struct {
	ID                      string     `json:"id"`
	URL                     string     `json:"url"`
	Description             string     `json:"description"`
	EventTypes              []string   `json:"event_types"`
	AccountID               *string    `json:"account_id"`
	Enabled                 bool       `json:"enabled"`
	DisabledReason          string     `json:"disabled_reason"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
	Secret                  string     `json:"secret,omitempty"`
}

// NewWebhook returns the JSON shape of e, without its secret.
func NewWebhook(e *keystore.Endpoint, now time.Time) Webhook { return newWebhook(e, now, false) }

// NewWebhookWithSecret is NewWebhook for the responses that show the
// secret, once.
func NewWebhookWithSecret(e *keystore.Endpoint, now time.Time) Webhook {
	return newWebhook(e, now, true)
}

func newWebhook(e *keystore.Endpoint, now time.Time, withSecret bool) Webhook {
	out := Webhook{ID: e.ID, URL: e.URL, Description: e.Description, EventTypes: e.EventTypes, AccountID: optional(e.AccountID),
		Enabled: e.DisabledAt == nil, DisabledReason: e.DisabledReason, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	if out.EventTypes == nil {
		out.EventTypes = []string{}
	}
	if e.PreviousSecretUntil != nil && now.Before(*e.PreviousSecretUntil) {
		out.PreviousSecretExpiresAt = e.PreviousSecretUntil
	}
	if withSecret {
		out.Secret = e.Secret.Reveal()
	}
	return out
}

// Delivery is the JSON shape of one entry of a webhook's delivery log.
type Delivery struct {
	ID            int64      `json:"id"`
	EventID       string     `json:"event_id"`
	EventType     string     `json:"event_type"`
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	LastStatus    *int       `json:"last_status"`
	LastError     string     `json:"last_error"`
	DeliveredAt   *time.Time `json:"delivered_at"`
	CreatedAt     time.Time  `json:"created_at"`
}

// NewDelivery returns the JSON shape of a delivery log entry.
func NewDelivery(d keystore.Delivery) Delivery {
	out := Delivery{ID: d.ID, EventID: d.EventID, EventType: d.EventType, State: d.State, Attempts: d.Attempts,
		NextAttemptAt: d.NextAttemptAt, LastAttemptAt: d.LastAttemptAt, LastError: d.LastError, DeliveredAt: d.DeliveredAt,
		CreatedAt: d.CreatedAt}
	if d.LastStatus != 0 {
		out.LastStatus = &d.LastStatus
	}
	return out
}

func (s *Server) eventTypes(w http.ResponseWriter, _ *http.Request, _ Principal) *problem {
	leads := make([]string, len(s.events.ExpiryLeads))
	for i, l := range s.events.ExpiryLeads {
		leads[i] = keystore.FormatDuration(l)
	}
	writeJSON(w, http.StatusOK, map[string]any{"event_types": keystore.EventTypes, "expiry_leads": leads})
	return nil
}

func webhookNotFound() *problem { return newProblem(probNotFound, "There is no webhook with this id.") }

// webhook reads the endpoint the path names, as p may see it: another
// account's endpoint, or one for every account, is 404 to a token bound
// to an account.
func (s *Server) webhook(r *http.Request, p Principal) (*keystore.Endpoint, *problem) {
	e, err := s.store.Endpoint(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, keystore.ErrNotFound) || errors.Is(err, keystore.ErrInvalid):
		return nil, webhookNotFound()
	case err != nil:
		return nil, s.storeProblem(err)
	case p.Account != "" && e.AccountID != p.Account:
		return nil, webhookNotFound()
	}
	return e, nil
}

// webhookProblem maps a store error of a webhook operation.
func (s *Server) webhookProblem(err error) *problem {
	if errors.Is(err, keystore.ErrNotFound) {
		return webhookNotFound()
	}
	return s.storeProblem(err)
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	es, err := s.store.Endpoints(r.Context(), p.Account)
	if err != nil {
		return s.storeProblem(err)
	}
	items := make([]Webhook, 0, len(es))
	for _, e := range es {
		items = append(items, newWebhook(e, s.now(), false))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

var webhookFields = []string{"url", "description", "event_types", "account_id"}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	members, prob := decodeObject(r, false, "application/json")
	if prob != nil {
		return prob
	}
	var errs fieldErrors
	unknownFields(members, &errs, webhookFields)
	var params keystore.EndpointParams
	decodeMember(members, "url", &params.URL, &errs, "a string")
	decodeMember(members, "description", &params.Description, &errs, "a string")
	decodeMember(members, "event_types", &params.EventTypes, &errs, "an array of event types")
	decodeMember(members, "account_id", &params.AccountID, &errs, "a string")
	if present(members, "account_id") && !errs.has("account_id") {
		addValidation(&errs, keystore.ValidateAccountID(params.AccountID))
	}
	if p.Account != "" {
		if present(members, "account_id") && !errs.has("account_id") && params.AccountID != p.Account {
			return newProblem(probForbidden, "This admin token manages one account; its webhooks are that account's.")
		}
		params.AccountID = p.Account
	}
	s.checkWebhookURL(r.Context(), members, params.URL, &errs)
	if _, err := keystore.NormalizeEventTypes(params.EventTypes); err != nil && !errs.has("event_types") {
		addValidation(&errs, err)
	}
	if prob := errs.problem(webhookFields...); prob != nil {
		return prob
	}
	e, err := s.store.CreateEndpoint(r.Context(), params)
	if err != nil {
		return s.storeProblem(err)
	}
	w.Header().Set("Location", "/v1/webhooks/"+e.ID)
	writeJSON(w, http.StatusCreated, newWebhook(e, s.now(), true))
	return nil
}

// checkWebhookURL records what is wrong with a webhook URL: what it says,
// and where it leads.
func (s *Server) checkWebhookURL(ctx context.Context, members map[string]json.RawMessage, url string, errs *fieldErrors) {
	if errs.has("url") {
		return
	}
	if !present(members, "url") {
		errs.add("url", "required: the http(s) URL events are sent to")
		return
	}
	var err error
	if s.events.CheckURL != nil {
		err = s.events.CheckURL(ctx, url) // what the URL says, then where it leads
	} else {
		_, err = keystore.ValidateEndpointURL(url)
	}
	if err != nil {
		if len(validationErrors(err)) == 0 {
			errs.add("url", "could not be checked: "+oneLine(err.Error()))
		}
		addValidation(errs, err)
	}
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	e, prob := s.webhook(r, p)
	if prob != nil {
		return prob
	}
	writeJSON(w, http.StatusOK, newWebhook(e, s.now(), false))
	return nil
}

var webhookUpdateFields = []string{"url", "description", "event_types", "enabled"}

func (s *Server) updateWebhook(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	members, prob := decodeObject(r, false, "application/merge-patch+json", "application/json")
	if prob != nil {
		return prob
	}
	e, prob := s.webhook(r, p)
	if prob != nil {
		return prob
	}
	var errs fieldErrors
	unknownFields(members, &errs, webhookUpdateFields)
	var c keystore.EndpointChange
	if _, ok := members["url"]; ok {
		c.URL = new(string)
		decodeMember(members, "url", c.URL, &errs, "a string")
		s.checkWebhookURL(r.Context(), members, *c.URL, &errs)
	}
	if v, ok := members["description"]; ok {
		c.Description = new(string)
		if string(v) != "null" {
			decodeMember(members, "description", c.Description, &errs, "a string")
		}
	}
	if _, ok := members["event_types"]; ok {
		c.EventTypes = &[]string{}
		decodeMember(members, "event_types", c.EventTypes, &errs, "an array of event types, or null for every type")
	}
	if v, ok := members["enabled"]; ok {
		c.Enabled = new(bool)
		if string(v) == "null" {
			errs.add("enabled", "must be true or false")
		}
		decodeMember(members, "enabled", c.Enabled, &errs, "true or false")
	}
	if prob := errs.problem(webhookUpdateFields...); prob != nil {
		return prob
	}
	up, err := s.store.UpdateEndpoint(r.Context(), e.ID, c)
	if err != nil {
		var fe fieldErrors
		if addValidation(&fe, err); len(fe) > 0 {
			return fe.problem(webhookUpdateFields...)
		}
		return s.webhookProblem(err)
	}
	writeJSON(w, http.StatusOK, newWebhook(up, s.now(), false))
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	e, prob := s.webhook(r, p)
	if prob != nil {
		return prob
	}
	if err := s.store.DeleteEndpoint(r.Context(), e.ID); err != nil {
		return s.webhookProblem(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DefaultSecretOverlap is how long a replaced signing secret keeps
// signing when the rotation does not say.
const DefaultSecretOverlap = 24 * time.Hour

func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	members, prob := decodeObject(r, true, "application/json")
	if prob != nil {
		return prob
	}
	e, prob := s.webhook(r, p)
	if prob != nil {
		return prob
	}
	var errs fieldErrors
	unknownFields(members, &errs, []string{"overlap"})
	overlap := DefaultSecretOverlap
	decodeDuration(members, "overlap", &overlap, &errs, `a duration like "24h" or "0s"`,
		keystore.MaxSecretOverlap, "must be a duration from 0s to "+keystore.FormatDuration(keystore.MaxSecretOverlap))
	if prob := errs.problem("overlap"); prob != nil {
		return prob
	}
	up, err := s.store.RotateEndpointSecret(r.Context(), e.ID, overlap)
	if err != nil {
		return s.webhookProblem(err)
	}
	writeJSON(w, http.StatusCreated, newWebhook(up, s.now(), true))
	return nil
}

// deliveryParams are the query parameters of a webhook's delivery log.
var deliveryParams = []string{"limit", "before"}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	e, prob := s.webhook(r, p)
	if prob != nil {
		return prob
	}
	q := keystore.DeliveryQuery{EndpointID: e.ID, Limit: DefaultPageSize}
	values, errs, prob := readQuery(r, deliveryParams)
	if prob != nil {
		return prob
	}
	if v := values.Get("limit"); values.Has("limit") && !errs.has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > keystore.MaxDeliveriesPage {
			errs.add("limit", "must be a number from 1 to "+strconv.Itoa(keystore.MaxDeliveriesPage))
		}
		q.Limit = n
	}
	if v := values.Get("before"); values.Has("before") && !errs.has("before") {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			errs.add("before", "must be a delivery id from a previous page's next_before")
		}
		q.Before = n
	}
	if prob := errs.problem(deliveryParams...); prob != nil {
		return prob
	}
	ds, err := s.store.Deliveries(r.Context(), q)
	if err != nil {
		return s.webhookProblem(err)
	}
	items := make([]Delivery, len(ds))
	for i, d := range ds {
		items[i] = NewDelivery(d)
	}
	var next *int64
	if len(ds) == q.Limit {
		next = &ds[len(ds)-1].ID
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next_before": next})
	return nil
}

func (s *Server) redeliver(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	if _, prob := decodeObject(r, true, "application/json"); prob != nil {
		return prob
	}
	e, prob := s.webhook(r, p)
	if prob != nil {
		return prob
	}
	id, err := strconv.ParseInt(r.PathValue("delivery"), 10, 64)
	if err != nil || id < 1 {
		return newProblem(probNotFound, "This webhook has no delivery with this id.")
	}
	if err := s.store.Redeliver(r.Context(), e.ID, id); err != nil {
		if errors.Is(err, keystore.ErrNotFound) {
			return newProblem(probNotFound, "This webhook has no delivery with this id.")
		}
		return s.storeProblem(err)
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// lookupKey answers "what is this key?": the key whose secret the body
// holds, whatever its state. An unknown key, a malformed one and another
// account's key (for a bound token) are the same 404.
func (s *Server) lookupKey(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	members, prob := decodeObject(r, false, "application/json")
	if prob != nil {
		return prob
	}
	var errs fieldErrors
	unknownFields(members, &errs, []string{"key"})
	var raw string
	decodeMember(members, "key", &raw, &errs, "a string")
	if !present(members, "key") && !errs.has("key") {
		errs.add("key", "required: the API key to look up")
	}
	if prob := errs.problem("key"); prob != nil {
		return prob
	}
	unknown := newProblem(probNotFound, "No key of this store has this value.")
	secret, err := keystore.ParseSecret(raw)
	if err != nil {
		return unknown
	}
	k, err := s.store.LookupKey(r.Context(), secret)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return unknown
	case err != nil:
		return s.storeProblem(err)
	case p.Account != "" && k.AccountID != p.Account:
		return unknown
	}
	writeJSON(w, http.StatusOK, NewKey(k, s.now()))
	return nil
}
