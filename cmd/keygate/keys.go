package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

type keysCmd struct {
	Create  keysCreateCmd  `cmd:"" help:"Create a key and print its secret, once."`
	List    keysListCmd    `cmd:"" help:"List keys (never secrets)."`
	Show    keysShowCmd    `cmd:"" help:"Show one key's record."`
	Update  keysUpdateCmd  `cmd:"" help:"Change a key's name, description, source restrictions or metadata."`
	Revoke  keysRevokeCmd  `cmd:"" help:"Revoke a key: it stops working on every replica."`
	Disable keysDisableCmd `cmd:"" help:"Disable a key: refused on every replica, like a revoked key, until 'keys enable'."`
	Enable  keysEnableCmd  `cmd:"" help:"Enable a disabled key again (a revoked key cannot be)."`
	Delete  keysDeleteCmd  `cmd:"" help:"Delete a key (the console's word for revoke): asks first on a terminal; the record and its audit trail stay."`
	Rotate  keysRotateCmd  `cmd:"" help:"Issue a new secret; the old one works until the grace period ends."`
	Events  keysEventsCmd  `cmd:"" help:"Show a key's audit trail: every lifecycle change, who made it and when."`
	Usage   keysUsageCmd   `cmd:"" help:"Show a key's decisions over time: allowed, and denied by outcome (rate_limited, quota_exhausted, …)."`
	Import  keysImportCmd  `cmd:"" help:"Import keys of another system from JSON lines, in one transaction: all or none."`
}

// outputFlag selects human or machine output.
type outputFlag struct {
	Output string `short:"o" enum:"table,json" default:"table" help:"Output format: table or json."`
}

// actorFlag names who makes a change, for the audit trail.
type actorFlag struct {
	Actor string `placeholder:"NAME" help:"Who makes the change, recorded in the audit trail. Default: cli:$USER."`
}

func (f actorFlag) actor(e *env) string {
	if f.Actor != "" {
		return f.Actor
	}
	if u := e.getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli"
}

type keysCreateCmd struct {
	dbFlags
	keyFlags
	outputFlag
	actorFlag
	Account     string    `required:"" placeholder:"ID" help:"Account (client) the key belongs to."`
	Name        string    `required:"" help:"Human name of the key."`
	Description string    `help:"What the key is for."`
	ExpiresIn   *duration `xor:"expiry" placeholder:"DURATION" help:"Lifetime, like 30d or 12h. Default: ${key_lifetime} (capped by --max-key-lifetime)."`
	ExpiresAt   string    `xor:"expiry" placeholder:"TIME" help:"Expiry time, RFC 3339 like 2027-01-31T00:00:00Z."`
	NoExpiry    bool      `xor:"expiry" help:"The key never expires."`
	Scope       []string  `placeholder:"SCOPE" help:"Scope: *, <module>:read, <module>:write or <module>:*; repeat for several. None: every unrestricted module."`
	sourceFlags
	metaFlags
	limitKeyFlags
}

func (c *keysCreateCmd) Run(e *env) error {
	expiry := keystore.Expiry{Never: c.NoExpiry}
	if c.ExpiresIn != nil {
		if *c.ExpiresIn <= 0 {
			return usageError("--expires-in: must be positive, like 30d or 12h")
		}
		expiry.In = time.Duration(*c.ExpiresIn)
	}
	if c.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, c.ExpiresAt)
		if err != nil {
			return usageError("--expires-at: want RFC 3339 time like 2027-01-31T00:00:00Z, got %q", c.ExpiresAt)
		}
		expiry.At = t
	}
	metadata, err := c.metadata()
	if err != nil {
		return err
	}
	store, closeStore, err := c.dbFlags.openStore(e, &c.keyFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	params := keystore.CreateParams{
		AccountID: c.Account, Name: c.Name, Description: c.Description, Scopes: c.Scope, Expiry: expiry, Actor: c.actor(e),
		AllowedCIDRs: c.AllowCIDR, Metadata: metadata, Limits: c.Limit, Quota: c.Quota,
	}
	// Every mistake is reported before anything is written (Create judges
	// the expiry again, at the database's clock).
	if err := store.CheckCreate(params, time.Now()); err != nil {
		return c.storeError(err, "")
	}
	k, secret, err := store.Create(e.ctx, params)
	if err != nil {
		return c.storeError(err, "")
	}
	return printSecret(e.stdout, c.Output, k, secret, "Created")
}

type keysListCmd struct {
	dbFlags
	outputFlag
	Account *string `placeholder:"ID" help:"Only this account's keys."`
	All     bool    `help:"Include revoked and expired keys."`
}

func (c *keysListCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	var account string
	if c.Account != nil {
		// An empty --account (an unset variable in a script, say) must
		// not turn into every account.
		if account = *c.Account; account == "" {
			return usageError("--account: must not be empty; leave the flag out to list every account")
		}
	}
	status := keystore.ListActive
	if c.All {
		status = keystore.ListAll
	}
	keys, err := store.List(e.ctx, keystore.ListParams{AccountID: account, Status: status})
	if err != nil {
		return c.storeError(err, "")
	}
	now := time.Now()
	if c.Output == "json" {
		out := make([]admin.Key, 0, len(keys))
		for _, k := range keys {
			out = append(out, admin.NewKey(k, now))
		}
		return writeJSON(e.stdout, out)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tACCOUNT\tNAME\tPREFIX\tSTATUS\tSCOPES\tEXPIRES\tLAST USED")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s…\t%s\t%s\t%s\t%s\n", k.ID, k.AccountID, oneLine(k.Name), k.DisplayPrefix,
			statusText(k, now), scopesText(k.Scopes), timeText(k.ExpiresAt, "never"), timeText(k.LastUsedAt, "-"))
	}
	return w.Flush()
}

type keysShowCmd struct {
	dbFlags
	outputFlag
	ID string `arg:"" help:"Key id."`
}

func (c *keysShowCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	k, err := store.Get(e.ctx, c.ID)
	if err != nil {
		return c.storeError(err, c.ID)
	}
	var quota *admin.QuotaUsage
	if used, err := store.QuotaUsed(e.ctx, k, time.Now()); err == nil {
		quota = admin.NewQuotaUsage(k, used, time.Now())
	}
	if c.Output == "json" {
		out := admin.NewKey(k, time.Now())
		out.QuotaUsage = quota
		return writeJSON(e.stdout, out)
	}
	if err := printKey(e.stdout, c.Output, k); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Quota:        %s\n", quotaText(quota, k))
	return nil
}

type keysUpdateCmd struct {
	dbFlags
	outputFlag
	actorFlag
	ID          string  `arg:"" help:"Key id."`
	Name        *string `help:"New name."`
	Description *string `help:"New description."`
	sourceUpdateFlags
	metaUpdateFlags
	limitUpdateFlags
}

func (c *keysUpdateCmd) Run(e *env) error {
	params := keystore.UpdateParams{Name: c.Name, Description: c.Description, Actor: c.actor(e)}
	c.sourceUpdateFlags.apply(&params)
	c.limitUpdateFlags.apply(&params)
	if err := c.metaUpdateFlags.apply(&params); err != nil {
		return err
	}
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	k, err := store.Update(e.ctx, c.ID, params)
	if err != nil {
		return c.storeError(err, c.ID)
	}
	return printKey(e.stdout, c.Output, k)
}

type keysRevokeCmd struct {
	keyStateCmd
}

func (c *keysRevokeCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	return c.revoke(e, store)
}

// revoke revokes c.ID and prints the result.
func (c *keysRevokeCmd) revoke(e *env, store *keystore.Store) error {
	k, err := store.Revoke(e.ctx, c.ID, c.actor(e))
	if err != nil {
		return c.storeError(err, c.ID)
	}
	if c.Output == "json" {
		return writeJSON(e.stdout, admin.NewKey(k, time.Now()))
	}
	fmt.Fprintf(e.stdout, "Revoked key %s (%s, account %s) at %s.\n", k.ID, oneLine(k.Name), k.AccountID, k.RevokedAt.Format(time.RFC3339))
	return nil
}

type keysDeleteCmd struct {
	keysRevokeCmd
	Yes bool `short:"y" help:"Do not ask for confirmation."`
}

// Run asks, on a terminal, before it revokes: the key stops working for
// good, and a script that did not mean it cannot undo it.
func (c *keysDeleteCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	if !c.Yes && e.interactive() {
		k, err := store.Get(e.ctx, c.ID)
		if err != nil {
			return c.storeError(err, c.ID)
		}
		fmt.Fprintf(e.stdout, "Delete key %s (%s, account %s)? It stops working on every replica within a second and cannot be restored. [y/N] ",
			k.ID, oneLine(k.Name), k.AccountID)
		answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(e.stdout, "Not deleted.")
			return &exitError{code: 1, err: errors.New("not confirmed; nothing changed")}
		}
	}
	return c.revoke(e, store)
}

type keysEventsCmd struct {
	dbFlags
	outputFlag
	ID string `arg:"" help:"Key id."`
}

func (c *keysEventsCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	if _, err := store.Get(e.ctx, c.ID); err != nil {
		return c.storeError(err, c.ID) // an unknown id is an error, not an empty trail
	}
	events, err := store.Events(e.ctx, c.ID)
	if err != nil {
		return c.storeError(err, c.ID)
	}
	if c.Output == "json" {
		out := make([]admin.Event, 0, len(events))
		for _, ev := range events {
			out = append(out, admin.NewEvent(ev))
		}
		return writeJSON(e.stdout, out)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "AT\tACTION\tACTOR\tDETAIL")
	for _, ev := range events {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", ev.At.Format(time.RFC3339), ev.Action, oneLine(ev.Actor), detailText(ev.Detail))
	}
	return w.Flush()
}

// detailText prints an event's detail as key=value pairs in key order.
func detailText(d map[string]any) string {
	if len(d) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(d))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v, _ := json.Marshal(d[k])
		parts = append(parts, k+"="+oneLine(string(v)))
	}
	return strings.Join(parts, " ")
}

type keysRotateCmd struct {
	dbFlags
	keyFlags
	outputFlag
	actorFlag
	ID    string   `arg:"" help:"Key id."`
	Grace duration `default:"${rotate_grace}" placeholder:"DURATION" help:"How long the old secret keeps working, like 24h or 7d; 0 ends it at once (default ${default})."`
}

func (c *keysRotateCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, &c.keyFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	r, err := store.Rotate(e.ctx, c.ID, keystore.RotateParams{Grace: time.Duration(c.Grace), Actor: c.actor(e)})
	if err != nil {
		return c.storeError(err, c.ID)
	}
	if c.Output == "json" {
		return writeJSON(e.stdout, admin.NewRotatedKey(r, time.Now()))
	}
	if err := printSecret(e.stdout, c.Output, r.New, r.Secret, "Rotated "+r.Old.ID+" into"); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "The old secret works until %s.\n", r.Old.ExpiresAt.Format(time.RFC3339))
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printSecret prints a new key with its secret: the one time it is shown.
func printSecret(w io.Writer, format string, k *keystore.Key, secret keystore.Secret, verb string) error {
	if format == "json" {
		return writeJSON(w, admin.NewSecretKey(k, secret, time.Now()))
	}
	fmt.Fprintf(w, "%s key %s (%s) for account %s, %s.\n\n", verb, k.ID, oneLine(k.Name), k.AccountID, expiryText(k.ExpiresAt))
	fmt.Fprintf(w, "  %s\n\n", secret.Reveal())
	fmt.Fprintln(w, "Copy the secret now: it is shown only this once and cannot be recovered.")
	return nil
}

func printKey(w io.Writer, format string, k *keystore.Key) error {
	now := time.Now()
	if format == "json" {
		return writeJSON(w, admin.NewKey(k, now))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows := [][2]string{
		{"ID", k.ID}, {"Account", k.AccountID}, {"Name", oneLine(k.Name)}, {"Description", oneLine(k.Description)},
		{"Prefix", k.DisplayPrefix + "…"}, {"Status", statusText(k, now)}, {"Scopes", scopesText(k.Scopes)},
		{"Allowed from", cidrsText(k.AllowedCIDRs)}, {"Metadata", metadataText(k.Metadata)}, {"Limits", limitsText(k.Limits)},
		{"Created", k.CreatedAt.Format(time.RFC3339) + " by " + k.CreatedBy}, {"Expires", timeText(k.ExpiresAt, "never")},
		{"Revoked", timeText(k.RevokedAt, "-")}, {"Disabled", timeText(k.DisabledAt, "-")}, {"Last used", timeText(k.LastUsedAt, "-")},
	}
	if k.RotatedFrom != "" {
		rows = append(rows, [2]string{"Rotated from", k.RotatedFrom})
	}
	if k.RotatedTo != "" {
		rows = append(rows, [2]string{"Rotated to", k.RotatedTo})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

// statusText is a key's status for people: active, expired or revoked,
// and for a rotated key still in its grace period, when that ends.
func statusText(k *keystore.Key, now time.Time) string {
	state := k.StateAt(now)
	if k.RotatedTo == "" || state != keystore.StateActive || k.ExpiresAt == nil {
		if k.RotatedTo != "" && state == keystore.StateExpired {
			return "rotated (grace ended)"
		}
		return state.String()
	}
	return "rotated (grace until " + k.ExpiresAt.Format(time.RFC3339) + ")"
}

func expiryText(t *time.Time) string {
	if t == nil {
		return "never expires"
	}
	return "expires " + t.Format(time.RFC3339)
}

func timeText(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.Format(time.RFC3339)
}

func scopesText(scopes []string) string {
	if len(scopes) == 0 {
		return "(all unrestricted modules)"
	}
	return strings.Join(scopes, ",")
}
