package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

// endpointColumns are the columns scanned into an Endpoint.
const endpointColumns = `id::text, url, description, event_types, coalesce(account_id, ''), secret, coalesce(previous_secret, ''),
	previous_secret_until, disabled_at, disabled_reason, created_at, updated_at`

func scanEndpoint(row pgx.CollectableRow) (*keystore.Endpoint, error) {
	var e keystore.Endpoint
	var secret, previous string
	if err := row.Scan(&e.ID, &e.URL, &e.Description, &e.EventTypes, &e.AccountID, &secret, &previous,
		&e.PreviousSecretUntil, &e.DisabledAt, &e.DisabledReason, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return nil, err
	}
	e.Secret, e.PreviousSecret = keystore.SigningSecret(secret), keystore.SigningSecret(previous)
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	utc(e.PreviousSecretUntil, e.DisabledAt)
	if len(e.EventTypes) == 0 {
		e.EventTypes = nil
	}
	return &e, nil
}

// utc sets each time that is there to UTC.
func utc(ts ...*time.Time) {
	for _, t := range ts {
		if t != nil {
			*t = t.UTC()
		}
	}
}

func queryEndpoint(ctx context.Context, q querier, sql string, args ...any) (*keystore.Endpoint, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, schemaError(err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, keystore.ErrNotFound
	}
	return e, schemaError(err)
}

// Endpoint returns the endpoint with the given id.
func (b *Backend) Endpoint(ctx context.Context, id string) (*keystore.Endpoint, error) {
	return queryEndpoint(ctx, b.pool, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1`, id)
}

// Endpoints returns an account's endpoints ("" for all), in creation
// order.
func (b *Backend) Endpoints(ctx context.Context, accountID string) ([]*keystore.Endpoint, error) {
	rows, err := b.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE $1 = '' OR account_id = $1 ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, schemaError(err)
	}
	return pgx.CollectRows(rows, scanEndpoint)
}

// deliveryColumns are the columns scanned into a Delivery; the statement
// joins webhook_events as ev.
const deliveryColumns = `d.id, d.endpoint_id::text, d.event_id, ev.type, d.state, d.attempts, d.next_attempt_at, d.last_attempt_at,
	d.last_status, d.last_error, d.delivered_at, d.created_at`

func scanDelivery(row pgx.CollectableRow) (keystore.Delivery, error) {
	var d keystore.Delivery
	var next time.Time
	err := row.Scan(&d.ID, &d.EndpointID, &d.EventID, &d.EventType, &d.State, &d.Attempts, &next, &d.LastAttemptAt,
		&d.LastStatus, &d.LastError, &d.DeliveredAt, &d.CreatedAt)
	if d.State == keystore.DeliveryPending {
		next = next.UTC()
		d.NextAttemptAt = &next
	}
	d.CreatedAt = d.CreatedAt.UTC()
	utc(d.LastAttemptAt, d.DeliveredAt)
	return d, err
}

// Deliveries returns an endpoint's deliveries, newest first.
func (b *Backend) Deliveries(ctx context.Context, q keystore.DeliveryQuery) ([]keystore.Delivery, error) {
	rows, err := b.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries AS d JOIN webhook_events AS ev ON ev.id = d.event_id
		WHERE d.endpoint_id = $1 AND ($2 = 0 OR d.id < $2) ORDER BY d.id DESC LIMIT $3`, q.EndpointID, q.Before, q.Limit)
	if err != nil {
		return nil, schemaError(err)
	}
	return pgx.CollectRows(rows, scanDelivery)
}

// ClaimDeliveries claims due deliveries: the rows are locked with FOR
// UPDATE SKIP LOCKED, so that replicas claiming at once take different
// rows instead of waiting for each other, and marked claimed until
// now+lease in the same transaction.
func (b *Backend) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]keystore.Claim, error) {
	var claims []keystore.Claim
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `WITH due AS (
				SELECT d.id FROM webhook_deliveries AS d JOIN webhook_endpoints AS e ON e.id = d.endpoint_id
				WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND (d.claimed_until IS NULL OR d.claimed_until <= $1)
					AND e.disabled_at IS NULL
				ORDER BY d.next_attempt_at, d.id LIMIT $3 FOR UPDATE OF d SKIP LOCKED)
			UPDATE webhook_deliveries AS d SET attempts = d.attempts + 1, claimed_until = $2
			FROM due, webhook_events AS ev, webhook_endpoints AS e
			WHERE d.id = due.id AND ev.id = d.event_id AND e.id = d.endpoint_id
			RETURNING d.id, d.attempts, ev.id, ev.type, ev.payload, e.id::text, e.url, e.secret, coalesce(e.previous_secret, ''),
				e.previous_secret_until, d.window_start`, now, now.Add(lease), limit)
		if err != nil {
			return err
		}
		claims, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.Claim, error) {
			var c keystore.Claim
			var payload, secret, previous string
			var until *time.Time
			err := row.Scan(&c.DeliveryID, &c.Attempt, &c.EventID, &c.EventType, &payload, &c.EndpointID, &c.URL, &secret, &previous,
				&until, &c.WindowStart)
			e := keystore.Endpoint{Secret: keystore.SigningSecret(secret), PreviousSecret: keystore.SigningSecret(previous), PreviousSecretUntil: until}
			c.Payload, c.Secrets, c.WindowStart = []byte(payload), e.Secrets(now), c.WindowStart.UTC()
			return c, err
		})
		return err
	})
	return claims, schemaError(err)
}

// FinishDelivery records a claimed attempt's outcome.
func (b *Backend) FinishDelivery(ctx context.Context, o keystore.DeliveryOutcome) (bool, error) {
	var done bool
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var endpoint string
		var delivered *time.Time
		if o.State == keystore.DeliveryDelivered {
			delivered = &o.At
		}
		err := tx.QueryRow(ctx, `UPDATE webhook_deliveries SET state = $3, next_attempt_at = $4, claimed_until = NULL,
				last_attempt_at = $5, last_status = $6, last_error = $7, delivered_at = $8
			WHERE id = $1 AND attempts = $2 AND state = 'pending' RETURNING endpoint_id::text`,
			o.DeliveryID, o.Attempt, o.State, o.NextAttemptAt, o.At, o.Status, o.Error, delivered).Scan(&endpoint)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		done = true
		if o.DisableEndpoint != "" {
			_, err = tx.Exec(ctx, `UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = $3, updated_at = $2
				WHERE id = $1 AND disabled_at IS NULL`, endpoint, o.At, o.DisableEndpoint)
		}
		return err
	})
	return done, schemaError(err)
}

// ExpiringKeys returns keys due for a warning (see keystore.EventBackend).
func (b *Backend) ExpiringKeys(ctx context.Context, q keystore.ExpiryQuery) ([]*keystore.Key, error) {
	keys, err := queryKeys(ctx, b.pool, scanKey, `SELECT `+keyColumns+` FROM api_keys
		WHERE revoked_at IS NULL AND disabled_at IS NULL AND expires_at > $1 AND expires_at <= $2
			AND NOT EXISTS (SELECT 1 FROM api_keys AS s WHERE s.rotated_from = api_keys.id)
			AND NOT EXISTS (SELECT 1 FROM key_expiry_notices AS n
				WHERE n.key_id = api_keys.id AND n.lead_seconds = $3 AND n.expires_at = api_keys.expires_at)
		ORDER BY expires_at, id LIMIT $4`, q.From, q.To, int64(q.Lead/time.Second), q.Limit)
	return keys, schemaError(err)
}

// CountExpiring counts the active keys expiring within each of within.
func (b *Backend) CountExpiring(ctx context.Context, now time.Time, within []time.Duration) ([]int, error) {
	ends := make([]time.Time, len(within))
	for i, d := range within {
		ends[i] = now.Add(d)
	}
	rows, err := b.pool.Query(ctx, `SELECT (SELECT count(*) FROM api_keys WHERE revoked_at IS NULL AND disabled_at IS NULL
			AND expires_at > $1 AND expires_at <= e.at)::int
		FROM unnest($2::timestamptz[]) WITH ORDINALITY AS e(at, n) ORDER BY e.n`, now, ends)
	if err != nil {
		return nil, schemaError(err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// PruneEvents deletes finished events that occurred before before.
func (b *Backend) PruneEvents(ctx context.Context, before time.Time) (int, error) {
	tag, err := b.pool.Exec(ctx, `DELETE FROM webhook_events AS ev WHERE ev.occurred_at < $1
		AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS d WHERE d.event_id = ev.id AND d.state = 'pending')`, before)
	return int(tag.RowsAffected()), schemaError(err)
}

// AddOutbox writes an event and its deliveries, if any endpoint
// subscribes to it.
func (t *txn) AddOutbox(ctx context.Context, ev keystore.OutboxEvent) (int, error) {
	const subscribed = `(cardinality(e.event_types) = 0 OR $2 = ANY(e.event_types)) AND (e.account_id IS NULL OR e.account_id = $3)`
	var n int
	err := t.tx.QueryRow(ctx, `WITH ev AS (
			INSERT INTO webhook_events (id, type, account_id, key_id, occurred_at, payload)
			SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM webhook_endpoints AS e WHERE `+subscribed+`)
			RETURNING id),
		d AS (INSERT INTO webhook_deliveries (event_id, endpoint_id, next_attempt_at, window_start, created_at)
			SELECT ev.id, e.id, $5, $5, $5 FROM ev, webhook_endpoints AS e WHERE `+subscribed+` RETURNING 1)
		SELECT count(*)::int FROM d`, ev.ID, ev.Type, ev.AccountID, ev.KeyID, ev.OccurredAt, string(ev.Payload)).Scan(&n)
	return n, err
}

// LockEndpoint reads an endpoint and locks its row.
func (t *txn) LockEndpoint(ctx context.Context, id string) (*keystore.Endpoint, error) {
	return queryEndpoint(ctx, t.tx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1 FOR UPDATE`, id)
}

// SaveEndpoint inserts or writes an endpoint.
func (t *txn) SaveEndpoint(ctx context.Context, e *keystore.Endpoint, insert bool) error {
	var account, previous *string
	if e.AccountID != "" {
		account = &e.AccountID
	}
	if e.PreviousSecret != "" {
		p := e.PreviousSecret.Reveal()
		previous = &p
	}
	types := e.EventTypes
	if types == nil {
		types = []string{}
	}
	args := []any{e.ID, e.URL, e.Description, types, account, e.Secret.Reveal(), previous, e.PreviousSecretUntil, e.DisabledAt,
		e.DisabledReason, e.CreatedAt, e.UpdatedAt}
	sql := `UPDATE webhook_endpoints SET url = $2, description = $3, event_types = $4, account_id = $5, secret = $6,
		previous_secret = $7, previous_secret_until = $8, disabled_at = $9, disabled_reason = $10, created_at = $11, updated_at = $12
		WHERE id = $1`
	if insert {
		sql = `INSERT INTO webhook_endpoints (id, url, description, event_types, account_id, secret, previous_secret,
			previous_secret_until, disabled_at, disabled_reason, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`
	}
	_, err := t.tx.Exec(ctx, sql, args...)
	return err
}

// DeleteEndpoint deletes an endpoint and its deliveries.
func (t *txn) DeleteEndpoint(ctx context.Context, id string) error {
	_, err := t.tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
	return err
}

// Redeliver makes a delivery pending again.
func (t *txn) Redeliver(ctx context.Context, endpointID string, deliveryID int64, now time.Time) error {
	tag, err := t.tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $3, window_start = $3,
			claimed_until = NULL, delivered_at = NULL
		WHERE id = $2 AND endpoint_id = $1`, endpointID, deliveryID, now)
	if err == nil && tag.RowsAffected() == 0 {
		return keystore.ErrNotFound
	}
	return err
}

// NoteExpiry notes an expiry warning; false when it was noted already.
// Two replicas noting the same warning at once serialise on the primary
// key: the second waits for the first to commit, then inserts nothing.
func (t *txn) NoteExpiry(ctx context.Context, keyID string, lead time.Duration, expiresAt, at time.Time) (bool, error) {
	tag, err := t.tx.Exec(ctx, `INSERT INTO key_expiry_notices (key_id, lead_seconds, expires_at, noticed_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, keyID, int64(lead/time.Second), expiresAt, at)
	return err == nil && tag.RowsAffected() == 1, err
}

// NoteLeakReport notes a leak report; false when it was noted already.
func (t *txn) NoteLeakReport(ctx context.Context, digest keystore.Digest, source string, at time.Time) (bool, error) {
	tag, err := t.tx.Exec(ctx, `INSERT INTO leak_reports (digest, source, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		digest[:], source, at)
	return err == nil && tag.RowsAffected() == 1, err
}
