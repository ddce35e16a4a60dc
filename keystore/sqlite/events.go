package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// endpointColumns are the columns scanned into an Endpoint.
const endpointColumns = `id, url, description, event_types, coalesce(account_id, ''), secret, coalesce(previous_secret, ''),
	previous_secret_until, disabled_at, disabled_reason, created_at, updated_at`

func scanEndpoint(row scanner) (*keystore.Endpoint, error) {
	var e keystore.Endpoint
	var types, secret, previous string
	var until, disabled sql.NullInt64
	var created, updated int64
	if err := row.Scan(&e.ID, &e.URL, &e.Description, &types, &e.AccountID, &secret, &previous, &until, &disabled,
		&e.DisabledReason, &created, &updated); err != nil {
		return nil, err
	}
	if types != "" {
		e.EventTypes = strings.Split(types, ",")
	}
	e.Secret, e.PreviousSecret = keystore.SigningSecret(secret), keystore.SigningSecret(previous)
	e.PreviousSecretUntil, e.DisabledAt = fromNullMicros(until), fromNullMicros(disabled)
	e.CreatedAt, e.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &e, nil
}

func queryEndpoint(ctx context.Context, q querier, query string, args ...any) (*keystore.Endpoint, error) {
	e, err := scanEndpoint(q.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, keystore.ErrNotFound
	}
	return e, schemaError(err)
}

// Endpoint returns the endpoint with the given id.
func (b *Backend) Endpoint(ctx context.Context, id string) (*keystore.Endpoint, error) {
	return queryEndpoint(ctx, b.reader, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = ?`, id)
}

// Endpoints returns an account's endpoints ("" for all), in creation
// order.
func (b *Backend) Endpoints(ctx context.Context, accountID string) ([]*keystore.Endpoint, error) {
	rows, err := b.reader.QueryContext(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE ?1 = '' OR account_id = ?1 ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, schemaError(err)
	}
	defer rows.Close()
	var out []*keystore.Endpoint
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Deliveries returns an endpoint's deliveries, newest first.
func (b *Backend) Deliveries(ctx context.Context, q keystore.DeliveryQuery) ([]keystore.Delivery, error) {
	rows, err := b.reader.QueryContext(ctx, `SELECT d.id, d.endpoint_id, d.event_id, ev.type, d.state, d.attempts, d.next_attempt_at,
			d.last_attempt_at, d.last_status, d.last_error, d.delivered_at, d.created_at
		FROM webhook_deliveries AS d JOIN webhook_events AS ev ON ev.id = d.event_id
		WHERE d.endpoint_id = ?1 AND (?2 = 0 OR d.id < ?2) ORDER BY d.id DESC LIMIT ?3`, q.EndpointID, q.Before, q.Limit)
	if err != nil {
		return nil, schemaError(err)
	}
	defer rows.Close()
	var out []keystore.Delivery
	for rows.Next() {
		var d keystore.Delivery
		var next, created int64
		var last, delivered sql.NullInt64
		if err := rows.Scan(&d.ID, &d.EndpointID, &d.EventID, &d.EventType, &d.State, &d.Attempts, &next, &last,
			&d.LastStatus, &d.LastError, &delivered, &created); err != nil {
			return nil, err
		}
		if d.State == keystore.DeliveryPending {
			t := fromMicros(next)
			d.NextAttemptAt = &t
		}
		d.LastAttemptAt, d.DeliveredAt, d.CreatedAt = fromNullMicros(last), fromNullMicros(delivered), fromMicros(created)
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDeliveries claims due deliveries in one write transaction: SQLite
// has one writer at a time, so two claimers never take the same row.
func (b *Backend) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]keystore.Claim, error) {
	// Most polls find nothing due: ask a reader first, so that an idle
	// outbox never takes the write lock.
	var due int
	if err := b.reader.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries
		WHERE state = 'pending' AND next_attempt_at <= ? LIMIT 1)`, micros(now)).Scan(&due); err != nil || due == 0 {
		return nil, schemaError(err)
	}
	var claims []keystore.Claim
	err := b.Write(ctx, func(t keystore.Tx) error {
		tx := t.(*txn).tx
		rows, err := tx.QueryContext(ctx, `UPDATE webhook_deliveries SET attempts = attempts + 1, claimed_until = ?2
			WHERE id IN (SELECT d.id FROM webhook_deliveries AS d JOIN webhook_endpoints AS e ON e.id = d.endpoint_id
				WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 AND (d.claimed_until IS NULL OR d.claimed_until <= ?1)
					AND e.disabled_at IS NULL
				ORDER BY d.next_attempt_at, d.id LIMIT ?3)
			RETURNING id, attempts`, micros(now), micros(now.Add(lease)), limit)
		if err != nil {
			return err
		}
		type claimed struct {
			id       int64
			attempts int
		}
		var got []claimed
		for rows.Next() {
			var c claimed
			if err := rows.Scan(&c.id, &c.attempts); err != nil {
				rows.Close()
				return err
			}
			got = append(got, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		claims = claims[:0]
		for _, g := range got {
			c := keystore.Claim{DeliveryID: g.id, Attempt: g.attempts}
			var payload, secret, previous string
			var until sql.NullInt64
			var window int64
			if err := tx.QueryRowContext(ctx, `SELECT ev.id, ev.type, ev.payload, e.id, e.url, e.secret, coalesce(e.previous_secret, ''),
					e.previous_secret_until, d.window_start
				FROM webhook_deliveries AS d JOIN webhook_events AS ev ON ev.id = d.event_id JOIN webhook_endpoints AS e ON e.id = d.endpoint_id
				WHERE d.id = ?`, g.id).Scan(&c.EventID, &c.EventType, &payload, &c.EndpointID, &c.URL, &secret, &previous, &until, &window); err != nil {
				return err
			}
			e := keystore.Endpoint{Secret: keystore.SigningSecret(secret), PreviousSecret: keystore.SigningSecret(previous),
				PreviousSecretUntil: fromNullMicros(until)}
			c.Payload, c.Secrets, c.WindowStart = []byte(payload), e.Secrets(now), fromMicros(window)
			claims = append(claims, c)
		}
		return nil
	})
	return claims, err
}

// FinishDelivery records a claimed attempt's outcome.
func (b *Backend) FinishDelivery(ctx context.Context, o keystore.DeliveryOutcome) (bool, error) {
	var done bool
	err := b.Write(ctx, func(t keystore.Tx) error {
		tx := t.(*txn).tx
		var delivered sql.NullInt64
		if o.State == keystore.DeliveryDelivered {
			delivered = nullMicros(&o.At)
		}
		var endpoint string
		err := tx.QueryRowContext(ctx, `UPDATE webhook_deliveries SET state = ?3, next_attempt_at = ?4, claimed_until = NULL,
				last_attempt_at = ?5, last_status = ?6, last_error = ?7, delivered_at = ?8
			WHERE id = ?1 AND attempts = ?2 AND state = 'pending' RETURNING endpoint_id`,
			o.DeliveryID, o.Attempt, o.State, micros(o.NextAttemptAt), micros(o.At), o.Status, o.Error, delivered).Scan(&endpoint)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		done = true
		if o.DisableEndpoint != "" {
			_, err = tx.ExecContext(ctx, `UPDATE webhook_endpoints SET disabled_at = ?2, disabled_reason = ?3, updated_at = ?2
				WHERE id = ?1 AND disabled_at IS NULL`, endpoint, micros(o.At), o.DisableEndpoint)
		}
		return err
	})
	return done, err
}

// ExpiringKeys returns keys due for a warning (see keystore.EventBackend).
func (b *Backend) ExpiringKeys(ctx context.Context, q keystore.ExpiryQuery) ([]*keystore.Key, error) {
	rows, err := b.reader.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys
		WHERE revoked_at IS NULL AND disabled_at IS NULL AND expires_at > ?1 AND expires_at <= ?2
			AND NOT EXISTS (SELECT 1 FROM api_keys AS s WHERE s.rotated_from = api_keys.id)
			AND NOT EXISTS (SELECT 1 FROM key_expiry_notices AS n
				WHERE n.key_id = api_keys.id AND n.lead_seconds = ?3 AND n.expires_at = api_keys.expires_at)
		ORDER BY expires_at, id LIMIT ?4`, micros(q.From), micros(q.To), int64(q.Lead/time.Second), q.Limit)
	if err != nil {
		return nil, schemaError(err)
	}
	defer rows.Close()
	var keys []*keystore.Key
	for rows.Next() {
		k, err := scanKey(rows, false)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// CountExpiring counts the active keys expiring within each of within.
func (b *Backend) CountExpiring(ctx context.Context, now time.Time, within []time.Duration) ([]int, error) {
	out := make([]int, len(within))
	for i, d := range within {
		if err := b.reader.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE revoked_at IS NULL AND disabled_at IS NULL
			AND expires_at > ? AND expires_at <= ?`, micros(now), micros(now.Add(d))).Scan(&out[i]); err != nil {
			return nil, schemaError(err)
		}
	}
	return out, nil
}

// PruneEvents deletes finished events that occurred before before.
func (b *Backend) PruneEvents(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := b.Write(ctx, func(t keystore.Tx) error {
		res, err := t.(*txn).tx.ExecContext(ctx, `DELETE FROM webhook_events WHERE occurred_at < ?
			AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS d WHERE d.event_id = webhook_events.id AND d.state = 'pending')`, micros(before))
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return int(n), err
}

// subscribed is keystore.Endpoint.Subscribes in SQL, for the event type
// :type and account :account.
const subscribed = `(e.event_types = '' OR instr(',' || e.event_types || ',', ',' || :type || ',') > 0)
	AND (e.account_id IS NULL OR e.account_id = :account)`

// AddOutbox writes an event and its deliveries, if any endpoint
// subscribes to it.
func (t *txn) AddOutbox(ctx context.Context, ev keystore.OutboxEvent) (int, error) {
	args := []any{sql.Named("id", ev.ID), sql.Named("type", ev.Type), sql.Named("account", ev.AccountID), sql.Named("key", ev.KeyID),
		sql.Named("at", micros(ev.OccurredAt)), sql.Named("payload", string(ev.Payload))}
	res, err := t.tx.ExecContext(ctx, `INSERT INTO webhook_events (id, type, account_id, key_id, occurred_at, payload)
		SELECT :id, :type, :account, :key, :at, :payload WHERE EXISTS (SELECT 1 FROM webhook_endpoints AS e WHERE `+subscribed+`)`, args...)
	if err != nil {
		return 0, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, err
	}
	res, err = t.tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, next_attempt_at, window_start, created_at)
		SELECT :id, e.id, :at, :at, :at FROM webhook_endpoints AS e WHERE `+subscribed, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// LockEndpoint reads an endpoint; the transaction's write lock keeps it
// as read.
func (t *txn) LockEndpoint(ctx context.Context, id string) (*keystore.Endpoint, error) {
	return queryEndpoint(ctx, t.tx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = ?`, id)
}

// SaveEndpoint inserts or writes an endpoint.
func (t *txn) SaveEndpoint(ctx context.Context, e *keystore.Endpoint, insert bool) error {
	var account, previous sql.NullString
	if e.AccountID != "" {
		account = sql.NullString{String: e.AccountID, Valid: true}
	}
	if e.PreviousSecret != "" {
		previous = sql.NullString{String: e.PreviousSecret.Reveal(), Valid: true}
	}
	args := []any{e.ID, e.URL, e.Description, strings.Join(e.EventTypes, ","), account, e.Secret.Reveal(), previous,
		nullMicros(e.PreviousSecretUntil), nullMicros(e.DisabledAt), e.DisabledReason, micros(e.CreatedAt), micros(e.UpdatedAt)}
	query := `UPDATE webhook_endpoints SET url = ?2, description = ?3, event_types = ?4, account_id = ?5, secret = ?6,
		previous_secret = ?7, previous_secret_until = ?8, disabled_at = ?9, disabled_reason = ?10, created_at = ?11, updated_at = ?12
		WHERE id = ?1`
	if insert {
		query = `INSERT INTO webhook_endpoints (id, url, description, event_types, account_id, secret, previous_secret,
			previous_secret_until, disabled_at, disabled_reason, created_at, updated_at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)`
	}
	_, err := t.tx.ExecContext(ctx, query, args...)
	return err
}

// DeleteEndpoint deletes an endpoint and its deliveries.
func (t *txn) DeleteEndpoint(ctx context.Context, id string) error {
	_, err := t.tx.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE id = ?`, id)
	return err
}

// Redeliver makes a delivery pending again.
func (t *txn) Redeliver(ctx context.Context, endpointID string, deliveryID int64, now time.Time) error {
	res, err := t.tx.ExecContext(ctx, `UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?3, window_start = ?3,
			claimed_until = NULL, delivered_at = NULL
		WHERE id = ?2 AND endpoint_id = ?1`, endpointID, deliveryID, micros(now))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return keystore.ErrNotFound
	}
	return nil
}

// insertIfAbsent runs an INSERT … ON CONFLICT DO NOTHING and reports
// whether it inserted the row.
func (t *txn) insertIfAbsent(ctx context.Context, query string, args ...any) (bool, error) {
	res, err := t.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// NoteExpiry notes an expiry warning; false when it was noted already.
func (t *txn) NoteExpiry(ctx context.Context, keyID string, lead time.Duration, expiresAt, at time.Time) (bool, error) {
	return t.insertIfAbsent(ctx, `INSERT INTO key_expiry_notices (key_id, lead_seconds, expires_at, noticed_at)
		VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, keyID, int64(lead/time.Second), micros(expiresAt), micros(at))
}

// NoteLeakReport notes a leak report; false when it was noted already.
func (t *txn) NoteLeakReport(ctx context.Context, digest keystore.Digest, source string, at time.Time) (bool, error) {
	return t.insertIfAbsent(ctx, `INSERT INTO leak_reports (digest, source, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		digest[:], source, micros(at))
}
