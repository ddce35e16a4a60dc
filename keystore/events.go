package keystore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Event types: what webhook endpoints subscribe to. Every lifecycle change
// of a key is one of the first six, announced by Store.record in the
// change's transaction; key.expiring and key.expired come from the expiry
// warnings (WarnExpiring), key.leaked from a leak report (HandleLeak).
const (
	EventKeyCreated  = "key.created"
	EventKeyUpdated  = "key.updated"
	EventKeyRotated  = "key.rotated"
	EventKeyRevoked  = "key.revoked"
	EventKeyDisabled = "key.disabled"
	EventKeyEnabled  = "key.enabled"
	EventKeyExpiring = "key.expiring"
	EventKeyExpired  = "key.expired"
	EventKeyLeaked   = "key.leaked"
)

// EventTypes are every event type, in the order the docs list them.
var EventTypes = []string{EventKeyCreated, EventKeyUpdated, EventKeyRotated, EventKeyRevoked, EventKeyDisabled,
	EventKeyEnabled, EventKeyExpiring, EventKeyExpired, EventKeyLeaked}

// eventOfAction is the event type of each audited action that announces
// one ("import" does not: an import is announced to caches, not to
// webhooks, so that loading thousands of keys sends no flood).
var eventOfAction = map[string]string{
	"create": EventKeyCreated, "update": EventKeyUpdated, "rotate": EventKeyRotated, "revoke": EventKeyRevoked,
	"disable": EventKeyDisabled, "enable": EventKeyEnabled, "leak": EventKeyLeaked,
}

// EventBackend is the part of the store contract that keeps events going
// out: webhook endpoints, the outbox's deliveries, expiry bookkeeping.
// Every Backend implements it; the conformance suite checks each.
type EventBackend interface {
	// Endpoint returns the webhook endpoint with the given id
	// (ErrNotFound if none).
	Endpoint(ctx context.Context, id string) (*Endpoint, error)
	// Endpoints returns the endpoints of one account ("" for every
	// endpoint), in creation order.
	Endpoints(ctx context.Context, accountID string) ([]*Endpoint, error)
	// Deliveries returns an endpoint's deliveries, newest first.
	Deliveries(ctx context.Context, q DeliveryQuery) ([]Delivery, error)
	// ClaimDeliveries claims up to limit pending deliveries due at now
	// whose endpoint is enabled and which no live claim holds, oldest due
	// first: each gets Attempts+1 and a claim until now+lease, in one
	// transaction, so that two claimers (two replicas) never get the same
	// delivery while a claim lasts.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Claim, error)
	// FinishDelivery records the outcome of a claimed attempt, if the
	// delivery is still pending at that attempt (false otherwise: the
	// claim was lost and someone else owns the delivery now).
	FinishDelivery(ctx context.Context, o DeliveryOutcome) (bool, error)
	// ExpiringKeys returns up to q.Limit keys that can still expire
	// (neither revoked, disabled nor rotated) whose expiry is after q.From
	// and at or before q.To, and for which no notice of q.Lead and that
	// expiry was noted (Tx.NoteExpiry).
	ExpiringKeys(ctx context.Context, q ExpiryQuery) ([]*Key, error)
	// CountExpiring counts, for each of within, the keys that are active
	// at now and expire within it.
	CountExpiring(ctx context.Context, now time.Time, within []time.Duration) ([]int, error)
	// PruneEvents deletes events that occurred before before and whose
	// deliveries are all finished (delivered or failed), with those
	// deliveries; it returns how many events it deleted.
	PruneEvents(ctx context.Context, before time.Time) (int, error)
}

// EventTx is the part of a write transaction that keeps events going out.
type EventTx interface {
	// AddOutbox writes ev and one pending delivery, due at ev.OccurredAt,
	// for every endpoint subscribed to it (its type, and its account or
	// every account), whether enabled or not; nothing when none is. It
	// returns how many deliveries it wrote.
	AddOutbox(ctx context.Context, ev OutboxEvent) (int, error)
	// LockEndpoint reads an endpoint and keeps others from changing it
	// until the transaction ends (ErrNotFound if there is none).
	LockEndpoint(ctx context.Context, id string) (*Endpoint, error)
	// SaveEndpoint inserts e (insert) or writes every field of it.
	SaveEndpoint(ctx context.Context, e *Endpoint, insert bool) error
	// DeleteEndpoint deletes an endpoint and its deliveries.
	DeleteEndpoint(ctx context.Context, id string) error
	// Redeliver makes a delivery of an endpoint pending again, due at
	// now, with a retry window starting at now (ErrNotFound if the
	// endpoint has no such delivery).
	Redeliver(ctx context.Context, endpointID string, deliveryID int64, now time.Time) error
	// NoteExpiry notes that the warning of lead (0: expired) for a key
	// expiring at expiresAt went out, and reports whether it is new
	// (false: noted already, by this process or another).
	NoteExpiry(ctx context.Context, keyID string, lead time.Duration, expiresAt, at time.Time) (bool, error)
	// NoteLeakReport notes a leak report by the digest of its body and
	// reports whether it is new (false: a replay).
	NoteLeakReport(ctx context.Context, digest Digest, source string, at time.Time) (bool, error)
}

// Endpoint is a webhook endpoint: where events of some types go.
type Endpoint struct {
	ID          string
	URL         string
	Description string
	// EventTypes it subscribes to; empty: every type.
	EventTypes []string
	// AccountID, when not "", limits it to that account's keys.
	AccountID string
	// Secret signs its deliveries; PreviousSecret signs them too until
	// PreviousSecretUntil (a rotation's overlap).
	Secret              SigningSecret
	PreviousSecret      SigningSecret
	PreviousSecretUntil *time.Time
	// DisabledAt, when set, stops its deliveries (kept pending) until it
	// is enabled; DisabledReason says why ("410 Gone from the receiver").
	DisabledAt     *time.Time
	DisabledReason string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Subscribes reports whether e wants events of type t about a key of
// account: the one definition that every backend's AddOutbox follows.
func (e *Endpoint) Subscribes(t, account string) bool {
	return (len(e.EventTypes) == 0 || slices.Contains(e.EventTypes, t)) && (e.AccountID == "" || e.AccountID == account)
}

// Secrets are the secrets that sign a delivery at now: the current one,
// and the previous one while its overlap lasts.
func (e *Endpoint) Secrets(now time.Time) []SigningSecret {
	out := []SigningSecret{e.Secret}
	if e.PreviousSecret != "" && e.PreviousSecretUntil != nil && now.Before(*e.PreviousSecretUntil) {
		out = append(out, e.PreviousSecret)
	}
	return out
}

// SigningSecret is a Standard Webhooks signing secret, "whsec_" and the
// base64 of 32 random bytes. Its String method never prints it.
type SigningSecret string

// String redacts the secret.
func (SigningSecret) String() string { return "[REDACTED]" }

// GoString redacts the secret for %#v as well.
func (SigningSecret) GoString() string { return `keystore.SigningSecret("[REDACTED]")` }

// Reveal returns the secret, for the one response that shows it and for
// signing.
func (s SigningSecret) Reveal() string { return string(s) }

// SigningSecretPrefix starts every signing secret.
const SigningSecretPrefix = "whsec_"

// Key returns the HMAC key the secret encodes.
func (s SigningSecret) Key() ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(s), SigningSecretPrefix))
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("keystore: a signing secret must be %s and the base64 of 24 to 64 bytes", SigningSecretPrefix)
	}
	return key, nil
}

// NewSigningSecret returns a new random signing secret.
func NewSigningSecret() (SigningSecret, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return SigningSecret(SigningSecretPrefix + base64.StdEncoding.EncodeToString(b)), nil
}

// OutboxEvent is one event as the outbox keeps it: Payload is the exact
// JSON body every endpoint receives.
type OutboxEvent struct {
	ID         string
	Type       string
	AccountID  string
	KeyID      string
	OccurredAt time.Time
	Payload    []byte
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Delivery is one event's delivery to one endpoint, as its log shows it.
type Delivery struct {
	ID            int64
	EndpointID    string
	EventID       string
	EventType     string
	State         string // DeliveryPending, DeliveryDelivered or DeliveryFailed
	Attempts      int
	NextAttemptAt *time.Time // pending only
	LastAttemptAt *time.Time
	LastStatus    int    // the receiver's last HTTP status, 0 if none
	LastError     string // why the last attempt failed, "" if it did not
	DeliveredAt   *time.Time
	CreatedAt     time.Time
}

// DeliveryQuery selects an endpoint's deliveries: newest first, those
// with an id under Before (0: from the newest), at most Limit.
type DeliveryQuery struct {
	EndpointID string
	Before     int64
	Limit      int
}

// Claim is a delivery claimed for one attempt: what to send, where, and
// signed with what.
type Claim struct {
	DeliveryID  int64
	Attempt     int // the attempt this claim makes, 1 for the first
	EventID     string
	EventType   string
	Payload     []byte
	EndpointID  string
	URL         string
	Secrets     []SigningSecret
	WindowStart time.Time // retries go on until the retry window from here has passed
}

// DeliveryOutcome is what became of a claimed attempt.
type DeliveryOutcome struct {
	DeliveryID    int64
	Attempt       int
	At            time.Time
	State         string    // DeliveryDelivered, DeliveryFailed (given up), or DeliveryPending (retry)
	NextAttemptAt time.Time // when State is DeliveryPending
	Status        int
	Error         string
	// DisableEndpoint, when not "", disables the delivery's endpoint with
	// this reason (a receiver that answered 410 Gone).
	DisableEndpoint string
}

// ExpiryQuery selects keys due for the warning of Lead: see
// EventBackend.ExpiringKeys.
type ExpiryQuery struct {
	From, To time.Time
	Lead     time.Duration
	Limit    int
}

// MaxEndpointURLLen bounds a webhook URL.
const MaxEndpointURLLen = 2048

// ValidateEndpointURL checks what a webhook URL says by itself: an
// absolute http or https URL with a host, no credentials (they would be a
// secret shown in every listing), no fragment. Where it leads (the admin
// listener, a metadata address) is the delivery's own check, made again
// whenever it dials.
func ValidateEndpointURL(raw string) (*url.URL, error) {
	switch {
	case raw == "":
		return nil, invalid("url", "required: the http(s) URL events are sent to")
	case len(raw) > MaxEndpointURLLen:
		return nil, invalidf("url", "at most %d bytes", MaxEndpointURLLen)
	case !utf8.ValidString(raw) || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return nil, invalid("url", "must not contain spaces or control characters")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, invalid("url", "is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, invalid("url", "must be an http:// or https:// URL")
	case u.Host == "" || u.Hostname() == "":
		return nil, invalid("url", "must name a host")
	case u.User != nil:
		return nil, invalid("url", "must not hold credentials (user:password@): receivers check the signature instead")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, invalid("url", "must not have a fragment (#…)")
	}
	return u, nil
}

// NormalizeEventTypes checks event types and returns them sorted without
// duplicates.
func NormalizeEventTypes(types []string) ([]string, error) {
	out := make([]string, 0, len(types))
	for _, t := range types {
		if !slices.Contains(EventTypes, t) {
			return nil, invalidf("event_types", "unknown event type %s: want one of %s", echo(t), strings.Join(EventTypes, ", "))
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, nil
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// EndpointParams describe a new webhook endpoint.
type EndpointParams struct {
	URL         string
	Description string
	EventTypes  []string // none: every type
	AccountID   string   // "": every account
}

func (p EndpointParams) check() (*Endpoint, error) {
	_, urlErr := ValidateEndpointURL(p.URL)
	types, typesErr := NormalizeEventTypes(p.EventTypes)
	var accountErr error
	if p.AccountID != "" {
		accountErr = ValidateAccountID(p.AccountID)
	}
	if err := errors.Join(urlErr, typesErr, accountErr, ValidateDescription(p.Description)); err != nil {
		return nil, err
	}
	return &Endpoint{URL: p.URL, Description: p.Description, EventTypes: types, AccountID: p.AccountID}, nil
}

// CreateEndpoint registers a webhook endpoint with a new signing secret,
// which it returns (Endpoint.Secret) and which no listing shows again.
func (s *Store) CreateEndpoint(ctx context.Context, p EndpointParams) (*Endpoint, error) {
	e, err := p.check()
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	e.ID = id.String()
	if e.Secret, err = NewSigningSecret(); err != nil {
		return nil, err
	}
	err = s.write(ctx, "create webhook endpoint", func(tx Tx, now time.Time) error {
		e.CreatedAt, e.UpdatedAt = now, now
		return tx.SaveEndpoint(ctx, e, true)
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// EndpointChange changes an endpoint; nil leaves a field as it is.
type EndpointChange struct {
	URL         *string
	Description *string
	EventTypes  *[]string
	Enabled     *bool
}

// UpdateEndpoint changes an endpoint. Enabling it clears why it was
// disabled; its pending deliveries go out again.
func (s *Store) UpdateEndpoint(ctx context.Context, id string, c EndpointChange) (*Endpoint, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	var problems []error
	if c.URL != nil {
		_, err := ValidateEndpointURL(*c.URL)
		problems = append(problems, err)
	}
	if c.Description != nil {
		problems = append(problems, ValidateDescription(*c.Description))
	}
	var types []string
	if c.EventTypes != nil {
		types, err = NormalizeEventTypes(*c.EventTypes)
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	var e *Endpoint
	err = s.write(ctx, "update webhook endpoint "+id, func(tx Tx, now time.Time) error {
		if e, err = tx.LockEndpoint(ctx, u); err != nil {
			return err
		}
		if c.URL != nil {
			e.URL = *c.URL
		}
		if c.Description != nil {
			e.Description = *c.Description
		}
		if c.EventTypes != nil {
			e.EventTypes = types
		}
		if c.Enabled != nil {
			if *c.Enabled {
				e.DisabledAt, e.DisabledReason = nil, ""
			} else if e.DisabledAt == nil {
				e.DisabledAt, e.DisabledReason = &now, "disabled by an operator"
			}
		}
		e.UpdatedAt = now
		return tx.SaveEndpoint(ctx, e, false)
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// MaxSecretOverlap bounds how long a replaced signing secret keeps
// signing.
const MaxSecretOverlap = 7 * 24 * time.Hour

// RotateEndpointSecret gives an endpoint a new signing secret, which it
// returns (Endpoint.Secret, shown once); the one it replaces keeps signing
// too for overlap (both signatures go out), so that the receiver can
// switch without losing a delivery.
func (s *Store) RotateEndpointSecret(ctx context.Context, id string, overlap time.Duration) (*Endpoint, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	if overlap < 0 || overlap > MaxSecretOverlap {
		return nil, invalidf("overlap", "must be between 0 and %s", FormatDuration(MaxSecretOverlap))
	}
	secret, err := NewSigningSecret()
	if err != nil {
		return nil, err
	}
	var e *Endpoint
	err = s.write(ctx, "rotate webhook secret "+id, func(tx Tx, now time.Time) error {
		if e, err = tx.LockEndpoint(ctx, u); err != nil {
			return err
		}
		until := now.Add(overlap)
		e.PreviousSecret, e.PreviousSecretUntil, e.Secret, e.UpdatedAt = e.Secret, &until, secret, now
		return tx.SaveEndpoint(ctx, e, false)
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// DeleteEndpoint deletes an endpoint and its delivery log; its pending
// deliveries never go out.
func (s *Store) DeleteEndpoint(ctx context.Context, id string) error {
	u, err := parseID(id)
	if err != nil {
		return err
	}
	return s.write(ctx, "delete webhook endpoint "+id, func(tx Tx, _ time.Time) error {
		if _, err := tx.LockEndpoint(ctx, u); err != nil {
			return err
		}
		return tx.DeleteEndpoint(ctx, u)
	})
}

// Endpoint returns the endpoint with the given id.
func (s *Store) Endpoint(ctx context.Context, id string) (*Endpoint, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	e, err := s.db.Endpoint(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("keystore: webhook endpoint %s: %w", id, err)
	}
	return e, nil
}

// Endpoints returns the endpoints of an account ("" for all of them).
func (s *Store) Endpoints(ctx context.Context, accountID string) ([]*Endpoint, error) {
	if accountID != "" {
		if err := ValidateAccountID(accountID); err != nil {
			return nil, err
		}
	}
	es, err := s.db.Endpoints(ctx, accountID)
	if err != nil {
		return nil, fmt.Errorf("keystore: webhook endpoints: %w", err)
	}
	return es, nil
}

// MaxDeliveriesPage bounds one page of a delivery log.
const MaxDeliveriesPage = 200

// Deliveries returns a page of an endpoint's delivery log, newest first.
func (s *Store) Deliveries(ctx context.Context, q DeliveryQuery) ([]Delivery, error) {
	u, err := parseID(q.EndpointID)
	if err != nil {
		return nil, err
	}
	if q.Limit <= 0 || q.Limit > MaxDeliveriesPage {
		return nil, invalidf("limit", "must be 1 to %d", MaxDeliveriesPage)
	}
	q.EndpointID = u
	ds, err := s.db.Deliveries(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("keystore: deliveries of %s: %w", q.EndpointID, err)
	}
	return ds, nil
}

// Redeliver sends a delivery again: pending at once, with a new retry
// window, whatever became of it before.
func (s *Store) Redeliver(ctx context.Context, endpointID string, deliveryID int64) error {
	u, err := parseID(endpointID)
	if err != nil {
		return err
	}
	return s.write(ctx, "redeliver", func(tx Tx, now time.Time) error {
		return tx.Redeliver(ctx, u, deliveryID, now)
	})
}

// Clock is the store's clock outside a transaction: the injected one, or
// this machine's.
func (s *Store) Clock() time.Time {
	if s.now != nil {
		return s.now().UTC().Truncate(time.Microsecond)
	}
	return time.Now().UTC().Truncate(time.Microsecond)
}

// ClaimDeliveries claims due deliveries for one attempt each (see
// EventBackend.ClaimDeliveries), at the store's clock.
func (s *Store) ClaimDeliveries(ctx context.Context, lease time.Duration, limit int) ([]Claim, error) {
	claims, err := s.db.ClaimDeliveries(ctx, s.Clock(), lease, limit)
	if err != nil {
		return nil, fmt.Errorf("keystore: claim deliveries: %w", err)
	}
	return claims, nil
}

// FinishDelivery records what became of a claimed attempt; false when the
// claim had been lost meanwhile (nothing written).
func (s *Store) FinishDelivery(ctx context.Context, o DeliveryOutcome) (bool, error) {
	if o.NextAttemptAt.IsZero() {
		o.NextAttemptAt = o.At
	}
	ok, err := s.db.FinishDelivery(ctx, o)
	if err != nil {
		return false, fmt.Errorf("keystore: finish delivery %d: %w", o.DeliveryID, err)
	}
	return ok, nil
}

// PruneEvents deletes finished events older than before.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int, error) {
	return s.db.PruneEvents(ctx, before)
}

// eventKey is a key as an event's payload shows it: what identifies it
// and its state, never its secret nor its digest.
type eventKey struct {
	ID            string            `json:"id"`
	AccountID     string            `json:"account_id"`
	Name          string            `json:"name"`
	DisplayPrefix string            `json:"display_prefix"`
	Scopes        []string          `json:"scopes"`
	Metadata      map[string]string `json:"metadata"`
	Status        string            `json:"status"`
	CreatedAt     time.Time         `json:"created_at"`
	ExpiresAt     *time.Time        `json:"expires_at"`
	RevokedAt     *time.Time        `json:"revoked_at"`
	DisabledAt    *time.Time        `json:"disabled_at"`
	RotatedFrom   string            `json:"rotated_from,omitempty"`
	RotatedTo     string            `json:"rotated_to,omitempty"`
}

// eventPayload is the body of every delivery, in the Standard Webhooks
// shape: type, timestamp, data.
type eventPayload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      eventData `json:"data"`
}

type eventData struct {
	Key    eventKey       `json:"key"`
	Actor  string         `json:"actor,omitempty"`
	Detail map[string]any `json:"detail"`
}

// announce writes the event of type t about k to the outbox, in tx.
func (s *Store) announce(ctx context.Context, tx Tx, t string, k *Key, at time.Time, actor string, detail map[string]any) error {
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	if detail == nil {
		detail = map[string]any{}
	}
	scopes, metadata := k.Scopes, k.Metadata
	if scopes == nil {
		scopes = []string{}
	}
	if metadata == nil {
		metadata = map[string]string{}
	}
	body, err := json.Marshal(eventPayload{Type: t, Timestamp: at, Data: eventData{Actor: actor, Detail: detail, Key: eventKey{
		ID: k.ID, AccountID: k.AccountID, Name: k.Name, DisplayPrefix: k.DisplayPrefix, Scopes: scopes, Metadata: metadata,
		Status: k.StateAt(at).String(), CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt,
		DisabledAt: k.DisabledAt, RotatedFrom: k.RotatedFrom, RotatedTo: k.RotatedTo,
	}}})
	if err != nil {
		return fmt.Errorf("event payload: %w", err)
	}
	_, err = tx.AddOutbox(ctx, OutboxEvent{ID: "evt_" + strings.ReplaceAll(id.String(), "-", ""), Type: t, AccountID: k.AccountID,
		KeyID: k.ID, OccurredAt: at, Payload: body})
	return err
}
