package main

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// keysDisableCmd and keysEnableCmd switch a key off and on again.
type keysDisableCmd struct {
	keyStateCmd
}

type keysEnableCmd struct {
	keyStateCmd
}

// keyStateCmd is what disable and enable share.
type keyStateCmd struct {
	dbFlags
	outputFlag
	actorFlag
	ID string `arg:"" help:"Key id."`
}

func (c *keysDisableCmd) Run(e *env) error {
	return c.run(e, (*keystore.Store).Disable, "Disabled", "It is refused on every replica until 'keygate keys enable "+c.ID+"'.")
}

func (c *keysEnableCmd) Run(e *env) error {
	return c.run(e, (*keystore.Store).Enable, "Enabled", "It works again on every replica.")
}

// run applies change to the key and reports the key as it now is.
func (c *keyStateCmd) run(e *env, change func(*keystore.Store, context.Context, string, string) (*keystore.Key, error), verb, after string) error {
	store, closeStore, err := openStore(e.ctx, c.dbFlags, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	k, err := change(store, e.ctx, c.ID, c.actor(e))
	if err != nil {
		return c.storeError(err, c.ID)
	}
	if c.Output == "json" {
		return writeJSON(e.stdout, admin.NewKey(k, time.Now()))
	}
	fmt.Fprintf(e.stdout, "%s key %s (%s, account %s). %s\n", verb, k.ID, oneLine(k.Name), k.AccountID, after)
	return nil
}
