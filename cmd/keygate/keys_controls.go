package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
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

// sourceFlags restrict where a new key may be used from.
type sourceFlags struct {
	AllowCIDR []string `placeholder:"CIDR" help:"Only from these source addresses: a CIDR prefix like 10.0.0.0/8 or 2001:db8::/32, or an address; repeat for several. None: from anywhere."`
}

// sourceUpdateFlags replace or remove a key's source restrictions.
type sourceUpdateFlags struct {
	AllowCIDR       []string `xor:"cidrs" placeholder:"CIDR" help:"Replace the source restrictions: only from these prefixes or addresses (repeat for several)."`
	ClearAllowCIDRs bool     `xor:"cidrs" name:"clear-allow-cidrs" help:"Remove the source restrictions: the key works from anywhere."`
}

// apply adds the flags given to p.
func (f sourceUpdateFlags) apply(p *keystore.UpdateParams) {
	switch {
	case f.ClearAllowCIDRs:
		p.AllowedCIDRs = &[]string{}
	case f.AllowCIDR != nil:
		p.AllowedCIDRs = &f.AllowCIDR
	}
}

// cidrsText is a key's source restrictions for people.
func cidrsText(cidrs []netip.Prefix) string {
	if len(cidrs) == 0 {
		return "anywhere"
	}
	out := make([]string, len(cidrs))
	for i, p := range cidrs {
		out[i] = p.String()
	}
	return strings.Join(out, ", ")
}
