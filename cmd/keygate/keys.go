package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

type keysCmd struct {
	Create  keysCreateCmd  `cmd:"" help:"Create a key and print its secret, once."`
	List    keysListCmd    `cmd:"" help:"List keys (never secrets)."`
	Show    keysShowCmd    `cmd:"" help:"Show one key's record."`
	Update  keysUpdateCmd  `cmd:"" help:"Change a key in place: name, description, scopes, expiry, source restrictions or metadata."`
	Revoke  keysRevokeCmd  `cmd:"" help:"Revoke a key: it stops working on every replica."`
	Disable keysDisableCmd `cmd:"" help:"Disable a key: refused on every replica, like a revoked key, until 'keys enable'."`
	Enable  keysEnableCmd  `cmd:"" help:"Enable a disabled key again (a revoked key cannot be)."`
	Delete  keysDeleteCmd  `cmd:"" help:"Delete a key (the console's word for revoke): asks first on a terminal, needs --yes without one; the record and its audit trail stay."`
	Rotate  keysRotateCmd  `cmd:"" help:"Issue a new secret; the old one works until the grace period ends."`
	Events  keysEventsCmd  `cmd:"" help:"Show a key's audit trail: every lifecycle change, who made it and when."`
	Usage   keysUsageCmd   `cmd:"" help:"Show a key's decisions over time: allowed, and denied by outcome (rate_limited, quota_exhausted, …)."`
	Import  keysImportCmd  `cmd:"" help:"Import keys of another system from JSON lines, in one transaction: all or none."`
	Whoami  keysWhoamiCmd  `cmd:"" help:"Which key is this? Reads a key from standard input (never an argument) and shows its id, account, state and expiry."`
}

// outputFlag selects human or machine output.
type outputFlag struct {
	Output string `short:"o" enum:"table,json" default:"table" help:"Output format: table or json."`
}

// actorFlag names who makes a change, for the audit trail.
type actorFlag struct {
	Actor string `placeholder:"NAME" help:"Who makes the change, recorded in the audit trail. Default: cli:$USER, or cli:<login> of the user running keygate."`
}

func (f actorFlag) actor(e *env) string {
	if f.Actor != "" {
		return f.Actor
	}
	if u := e.getenv("USER"); u != "" {
		return "cli:" + u
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// expiryFlags choose a key's expiry; create, update and rotate share them
// (expiry_default says what happens without them).
type expiryFlags struct {
	ExpiresIn *duration `xor:"expiry" placeholder:"DURATION" help:"Lifetime from now, like 30d or 12h; at least 1m, within --max-key-lifetime. ${expiry_default}"`
	ExpiresAt *string   `xor:"expiry" placeholder:"TIME" help:"Expiry time: RFC 3339 like 2027-01-31T12:00:00Z, or a date like 2027-01-31, which means the end of that day in UTC (2027-01-31T23:59:59Z)."`
	NoExpiry  bool      `xor:"expiry" help:"Never expire (refused under --max-key-lifetime)."`
}

// expiry reads the flags; given is false when none is set.
func (f expiryFlags) expiry() (e keystore.Expiry, given bool, err error) {
	switch {
	case f.ExpiresIn != nil:
		if *f.ExpiresIn <= 0 {
			return e, true, usageError("--expires-in: must be %s", admin.ExpiresInForms)
		}
		e.In = time.Duration(*f.ExpiresIn)
	case f.ExpiresAt != nil:
		t, err := admin.ParseExpiresAt(*f.ExpiresAt)
		if err != nil {
			return e, true, usageError("--expires-at: %v; got %q", err, echoShort(*f.ExpiresAt))
		}
		e.At = t
	case f.NoExpiry:
		e.Never = true
	default:
		return e, false, nil
	}
	return e, true, nil
}

// policyFlag names the policy a new scope is judged by, so that the CLI
// refuses what the admin API refuses, in its words (admin.ScopeProblem).
type policyFlag struct {
	Policy string `placeholder:"FILE" help:"The policy file serve uses (YAML): a new scope must name a module in it that is open to API keys. Default: the built-in example, as for serve."`
}

// checkScopes refuses the first of scopes that could never work under
// the policy, but for those in held (the key's own: it keeps them when the
// policy changes); flag names the flag they came from.
func (f policyFlag) checkScopes(scopes, held []string, flag string) error {
	var pol *policy.Policy
	for _, scope := range scopes {
		if slices.Contains(held, scope) {
			continue
		}
		if pol == nil {
			var err error
			if pol, err = loadPolicy(f.Policy, slog.New(slog.DiscardHandler)); err != nil {
				return err
			}
		}
		if problem := admin.ScopeProblem(pol, scope); problem != "" {
			if f.Policy == "" && strings.HasPrefix(problem, "no module") {
				problem += " (the built-in example policy: give --policy or KEYGATE_POLICY, the file serve uses)"
			}
			return usageError("%s %q: %s", flag, echoShort(scope), problem)
		}
	}
	return nil
}

// scopeUpdateFlags change a key's scopes: replace them, or add and remove
// some (in that order).
type scopeUpdateFlags struct {
	Scope       []string `xor:"scopes" placeholder:"SCOPE" help:"Replace the scopes with these: *, <module>:read, <module>:write or <module>:*; repeat for several."`
	ClearScopes bool     `xor:"scopes" help:"Remove every scope: the key may then use every module open to API keys."`
	AddScope    []string `placeholder:"SCOPE" help:"Add a scope; repeat for several."`
	RemoveScope []string `placeholder:"SCOPE" help:"Remove a scope the key has; repeat for several. The last one cannot be removed (that would open every module): use --clear-scopes to mean that."`
}

// apply adds the scope change the flags ask for to p.
func (f scopeUpdateFlags) apply(p *keystore.UpdateParams) {
	switch {
	case f.ClearScopes:
		p.Scopes = &[]string{}
	case f.Scope != nil:
		p.Scopes = &f.Scope
	}
	p.AddScopes, p.RemoveScopes = f.AddScope, f.RemoveScope
}

// check refuses new scopes that could never work (policyFlag.checkScopes)
// for the key k.
func (f scopeUpdateFlags) check(pf policyFlag, k *keystore.Key) error {
	if err := pf.checkScopes(f.Scope, k.Scopes, "--scope"); err != nil {
		return err
	}
	return pf.checkScopes(f.AddScope, k.Scopes, "--add-scope")
}

type keysCreateCmd struct {
	dbFlags
	keyFlags
	policyFlag
	outputFlag
	actorFlag
	Account     string `required:"" placeholder:"ID" help:"Account (client) the key belongs to."`
	Name        string `required:"" help:"Human name of the key."`
	Description string `help:"What the key is for."`
	expiryFlags `set:"expiry_default=Default: ${key_lifetime} (capped by --max-key-lifetime)."`
	Scope       []string `placeholder:"SCOPE" help:"Scope: *, <module>:read, <module>:write or <module>:*, of a module open to API keys in --policy; repeat for several. None: every open module."`
	sourceFlags
	metaFlags
	limitKeyFlags
}

func (c *keysCreateCmd) Run(e *env) error {
	expiry, _, err := c.expiry()
	if err != nil {
		return err
	}
	metadata, err := c.metadata()
	if err != nil {
		return err
	}
	if err := c.checkScopes(c.Scope, nil, "--scope"); err != nil {
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
	Status  string  `enum:"active,disabled,expired,revoked,all" default:"active" placeholder:"STATUS" help:"Which keys: active, disabled, expired, revoked or all."`
	All     bool    `help:"Every key, revoked, disabled and expired ones too: --status all."`
	Name    *string `placeholder:"TEXT" help:"Only keys whose name contains TEXT, ignoring case."`
	Limit   int     `default:"${page_size}" placeholder:"N" help:"Most keys listed, newest first: 1 to ${max_page_size}; when there are more, the cursor to list the next ones is printed on stderr."`
	Cursor  string  `placeholder:"CURSOR" help:"List the keys after those a listing stopped at: the cursor it printed."`
}

// Run lists a page of keys, newest first, as GET /v1/keys does
// (admin.ListKeys): the same filters, order and cursors.
func (c *keysListCmd) Run(e *env) error {
	req := admin.ListRequest{Limit: c.Limit, Cursor: c.Cursor}
	if c.Limit == 0 {
		req.Limit = -1 // out of range, as the API's limit=0 (ListKeys reads 0 as the default)
	}
	// An empty --account or --name (an unset variable in a script, say)
	// must not turn into every account or every name.
	if c.Account != nil {
		if req.AccountID = *c.Account; req.AccountID == "" {
			return usageError("--account: must not be empty; leave the flag out to list every account")
		}
	}
	if c.Name != nil {
		if req.Name = *c.Name; req.Name == "" {
			return usageError("--name: must not be empty; leave the flag out to list keys of every name")
		}
	}
	req.Status, _ = admin.ParseStatus(c.Status) // kong checked the enum
	if c.All {
		if c.Status != "active" && c.Status != "all" {
			return usageError("--all and --status %s can't be used together", c.Status)
		}
		req.Status = keystore.ListAll
	}
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	page, err := admin.ListKeys(e.ctx, store, req)
	if err != nil {
		return c.storeError(err, "")
	}
	defer func() {
		if page.NextCursor != "" {
			fmt.Fprintf(e.stderr, "More keys: list them with --cursor %s\n", page.NextCursor)
		}
	}()
	now := time.Now()
	if c.Output == "json" {
		out := make([]admin.Key, 0, len(page.Keys))
		for _, k := range page.Keys {
			out = append(out, admin.NewKey(k, now))
		}
		return writeJSON(e.stdout, out)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tACCOUNT\tNAME\tPREFIX\tSTATUS\tSCOPES\tEXPIRES\tLAST USED")
	for _, k := range page.Keys {
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
	store, k, closeStore, err := c.dbFlags.openKey(e, c.ID)
	if err != nil {
		return err
	}
	defer closeStore()
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
	keyFlags
	policyFlag
	outputFlag
	actorFlag
	ID          string  `arg:"" help:"Key id."`
	Name        *string `help:"New name."`
	Description *string `help:"New description."`
	scopeUpdateFlags
	expiryFlags `set:"expiry_default=Extends or shortens the key; a shorter expiry reaches every replica within a second."`
	sourceUpdateFlags
	metaUpdateFlags
	limitUpdateFlags
}

// Run changes the key in place, in one audited change; narrowing its
// scopes or shortening its expiry takes effect everywhere as a revocation
// does.
func (c *keysUpdateCmd) Run(e *env) error {
	params := keystore.UpdateParams{Name: c.Name, Description: c.Description, Actor: c.actor(e)}
	c.scopeUpdateFlags.apply(&params)
	if expiry, given, err := c.expiry(); err != nil {
		return err
	} else if given {
		params.Expiry = &expiry
	}
	c.sourceUpdateFlags.apply(&params)
	c.limitUpdateFlags.apply(&params)
	if err := c.metaUpdateFlags.apply(&params); err != nil {
		return err
	}
	if params.Empty() {
		return usageError("keys update: nothing to change: give --name, --description, a scope flag (--scope, --add-scope, --remove-scope, " +
			"--clear-scopes), an expiry flag (--expires-in, --expires-at, --no-expiry), --allow-cidr, --clear-allow-cidrs, --meta, --unset-meta, " +
			"--clear-meta, or a limit flag (--limit, --clear-limits, --quota, --clear-quota)")
	}
	store, closeStore, err := c.dbFlags.openStore(e, &c.keyFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	if c.Scope != nil || c.AddScope != nil {
		old, err := store.Get(e.ctx, c.ID)
		if err != nil {
			return c.storeError(err, c.ID)
		}
		if err := c.scopeUpdateFlags.check(c.policyFlag, old); err != nil {
			return err
		}
	}
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
	if err := c.revoke(e, store); err != nil {
		return c.storeError(err, c.ID)
	}
	return nil
}

// revoke revokes c.ID and prints the result; its error is the store's.
func (c *keysRevokeCmd) revoke(e *env, store *keystore.Store) error {
	k, err := store.Revoke(e.ctx, c.ID, c.actor(e))
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSON(e.stdout, admin.NewKey(k, time.Now()))
	}
	fmt.Fprintf(e.stdout, "Revoked key %s (%s, account %s) at %s.\n", k.ID, oneLine(k.Name), k.AccountID, k.RevokedAt.Format(time.RFC3339))
	return nil
}

type keysDeleteCmd struct {
	keysRevokeCmd
	Yes bool `short:"y" help:"Do not ask for confirmation (needed without a terminal)."`
}

// Run asks, on a terminal, before it revokes: the key stops working for
// good, and a script that did not mean it cannot undo it. Without a
// terminal it needs --yes. A key revoked already is deleted already: it
// says so and succeeds, as DELETE /v1/keys/{id} does, with no second
// audit event.
func (c *keysDeleteCmd) Run(e *env) error {
	if !c.Yes && !e.interactive() {
		return usageError("keys delete: no terminal to confirm on: add --yes to delete without asking; nothing was deleted")
	}
	store, k, closeStore, err := c.dbFlags.openKey(e, c.ID)
	if err != nil {
		return err
	}
	defer closeStore()
	if k.RevokedAt != nil {
		return c.revokedAlready(e, k)
	}
	if !c.Yes {
		fmt.Fprintf(e.stdout, "Delete key %s (%s, account %s)? It stops working on every replica within a second and cannot be restored. [y/N] ",
			k.ID, oneLine(k.Name), k.AccountID)
		answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(e.stdout, "Not deleted.")
			return &exitError{code: 1, err: errors.New("not confirmed; nothing changed")}
		}
	}
	err = c.revoke(e, store)
	if errors.Is(err, keystore.ErrRevoked) { // revoked meanwhile
		if k, err = store.Get(e.ctx, c.ID); err == nil {
			return c.revokedAlready(e, k)
		}
	}
	if err != nil {
		return c.storeError(err, c.ID)
	}
	return nil
}

// revokedAlready reports a key that was revoked before the command ran.
func (c *keysDeleteCmd) revokedAlready(e *env, k *keystore.Key) error {
	if c.Output == "json" {
		return writeJSON(e.stdout, admin.NewKey(k, time.Now()))
	}
	fmt.Fprintf(e.stdout, "Key %s (%s, account %s) was revoked already, at %s; nothing changed.\n", k.ID, oneLine(k.Name), k.AccountID,
		k.RevokedAt.Format(time.RFC3339))
	return nil
}

type keysEventsCmd struct {
	dbFlags
	outputFlag
	ID string `arg:"" help:"Key id."`
}

func (c *keysEventsCmd) Run(e *env) error {
	store, _, closeStore, err := c.dbFlags.openKey(e, c.ID) // an unknown id is an error, not an empty trail
	if err != nil {
		return err
	}
	defer closeStore()
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
	ID          string   `arg:"" help:"Key id."`
	Grace       duration `default:"${rotate_grace}" placeholder:"DURATION" help:"How long the old secret keeps working, like 24h or 7d; 0 ends it at once."`
	expiryFlags `set:"expiry_default=The successor's; without one it keeps the old key's expiry (capped by --max-key-lifetime)."`
}

func (c *keysRotateCmd) Run(e *env) error {
	expiry, _, err := c.expiry()
	if err != nil {
		return err
	}
	store, closeStore, err := c.dbFlags.openStore(e, &c.keyFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	r, err := store.Rotate(e.ctx, c.ID, keystore.RotateParams{Grace: time.Duration(c.Grace), Expiry: expiry, Actor: c.actor(e)})
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
