package keystore

import (
	"context"
	"fmt"
)

// Copied says what Copy copied.
type Copied struct {
	Keys, Events int
}

// Copy copies every key (its digest and hash scheme, id, account, scopes,
// state, metadata, expiry, rotation links, times) and every audit event
// from one backend to another, as one transaction of the target: all or
// nothing. The target must hold no keys: a copy is how a store moves (from
// SQLite to PostgreSQL when one node is no longer enough), not a merge.
// The source is read from one snapshot; the target announces the keys as
// added in bulk.
func Copy(ctx context.Context, from, to Backend) (Copied, error) {
	var keys []*Key
	var events []Event
	if err := from.Export(ctx, func(k *Key) error {
		keys = append(keys, k)
		return nil
	}, func(e Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		return Copied{}, fmt.Errorf("keystore: copy: reading %s: %w", from.Where(), err)
	}
	err := to.Write(ctx, func(tx Tx) error {
		held, err := tx.CountKeys(ctx)
		if err != nil {
			return err
		}
		if held > 0 {
			return invalidf("target", "%s holds %d keys already: copy into an empty database", to.Where(), held)
		}
		if len(keys) == 0 {
			return nil
		}
		if err := tx.Insert(ctx, keys...); err != nil {
			return err
		}
		if err := tx.AddEvents(ctx, events...); err != nil {
			return err
		}
		return tx.Notify(ctx, Notice{Added: true})
	})
	if err != nil {
		return Copied{}, fmt.Errorf("keystore: copy into %s: %w", to.Where(), err)
	}
	return Copied{Keys: len(keys), Events: len(events)}, nil
}
