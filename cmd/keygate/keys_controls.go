package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
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

// keyStateCmd is what the commands that change one key's state share
// (revoke, delete, disable, enable): the key's id and who changes it.
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
	store, closeStore, err := c.dbFlags.openStore(e, nil)
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

// metaFlags give a new key its metadata.
type metaFlags struct {
	Meta []string `sep:"none" placeholder:"KEY=VALUE" help:"Metadata entry like tier=gold (key: 1-32 of a-z, 0-9, _; value: up to 256 bytes); repeat for several, at most 16. In Envoy's dynamic metadata as meta.KEY, and upstream as x-keygate-meta-KEY for serve's --meta-header keys."`
}

// metadata reads --meta.
func (f metaFlags) metadata() (map[string]string, error) {
	if len(f.Meta) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, entry := range f.Meta {
		k, v, err := keystore.ParseMeta(entry)
		if err != nil {
			return nil, usageError("--meta: %s", strings.TrimPrefix(err.Error(), "metadata: "))
		}
		if _, dup := m[k]; dup {
			return nil, usageError("--meta: %s is given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// metaUpdateFlags change a key's metadata.
type metaUpdateFlags struct {
	metaFlags
	UnsetMeta []string `placeholder:"KEY" help:"Remove the metadata entry KEY; repeat for several."`
	ClearMeta bool     `help:"Remove every metadata entry (before --meta adds any)."`
}

// apply adds the metadata change the flags ask for to p.
func (f metaUpdateFlags) apply(p *keystore.UpdateParams) error {
	set, err := f.metadata()
	if err != nil {
		return err
	}
	if set != nil || f.UnsetMeta != nil || f.ClearMeta {
		p.Metadata = &keystore.MetadataChange{Clear: f.ClearMeta, Set: set, Unset: f.UnsetMeta}
	}
	return nil
}

// metadataText is a key's metadata for people: key=value, in key order.
func metadataText(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+oneLine(m[k]))
	}
	return strings.Join(parts, " ")
}

type keysImportCmd struct {
	dbFlags
	keyFlags
	outputFlag
	actorFlag
	File             string `arg:"" placeholder:"FILE" help:"JSON lines, one key each: account, name, description, scopes, expires_at, allowed_cidrs, metadata, and key (in clear) or sha256 (its hex SHA-256); - for standard input."`
	AcceptLegacyKeys bool   `help:"Also import keys without keygate's prefix and checksum, and sha256 digests; serve needs --accept-legacy-keys too for them to work."`
}

// Run imports the file in one transaction: every key, or none.
func (c *keysImportCmd) Run(e *env) error {
	in := e.stdin
	if c.File != "-" {
		f, err := os.Open(c.File)
		if err != nil {
			return usageError("FILE: %v", err)
		}
		defer f.Close()
		in = f
	} else if in == nil {
		return usageError("FILE: - reads standard input, which this run has not")
	}
	keys, err := keystore.ReadImport(in, keystore.ImportOptions{AcceptLegacy: c.AcceptLegacyKeys})
	var ie *keystore.ImportError
	switch {
	case errors.As(err, &ie):
		return usageError("%s: %v; nothing was imported", c.File, ie)
	case err != nil:
		return fmt.Errorf("%s: %w", c.File, err)
	case len(keys) == 0:
		return usageError("%s: no keys in the file", c.File)
	}
	store, closeStore, err := c.dbFlags.openStore(e, &c.keyFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	start := time.Now()
	n, err := store.Import(e.ctx, keys, c.actor(e))
	if errors.As(err, &ie) {
		return usageError("%s: %v; nothing was imported", c.File, ie)
	}
	if err != nil {
		return c.storeError(err, "")
	}
	if c.Output == "json" {
		return writeJSON(e.stdout, struct {
			Imported int `json:"imported"`
		}{n})
	}
	fmt.Fprintf(e.stdout, "Imported %d keys in %s.\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}
