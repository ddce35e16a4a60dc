package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/webhook"
)

// eventFlags configure events out: webhooks, expiry warnings and the leak
// intake; serve and dev share them.
type eventFlags struct {
	ExpiryLeads           []string `group:"events" name:"expiry-leads" default:"14d,3d,1d" placeholder:"DURATION" help:"Lead times of key.expiring warnings: one event per key and lead time, and key.expired when it passes."`
	ExpiryInterval        duration `group:"events" name:"expiry-interval" default:"1m" hidden:"" help:"Interval of the expiry warnings' pass (and the expiring-keys gauge)."`
	WebhookAllowLinkLocal bool     `group:"events" name:"webhook-allow-link-local" help:"Let webhooks reach link-local and cloud metadata addresses (169.254.169.254 …), refused otherwise."`
	LeaksPolicy           string   `group:"events" name:"leaks-policy" enum:"revoke,disable,notify" default:"revoke" help:"What a leak report (POST /v1/leaks) does to a key of this store it names: revoke, disable or notify."`
	LeaksGitHubKeysFile   string   `group:"events" name:"leaks-github-keys-file" type:"existingfile" placeholder:"FILE" help:"GitHub's secret scanning public keys, as GitHub serves them (api.github.com/meta/public_keys/secret_scanning): turns on GitHub's partner alerts on POST /v1/leaks."`
	LeaksGitLabTokenFile  string   `group:"events" name:"leaks-gitlab-token-file" type:"existingfile" placeholder:"FILE" help:"File holding the token GitLab's Token Revocation API sends: turns on GitLab's requests on POST /v1/leaks."`
}

// eventsConfig is the checked configuration of events out.
type eventsConfig struct {
	leads []time.Duration
	guard *webhook.Guard // shared by the admin API (registration) and the deliverer (every dial)
	leaks *admin.LeakIntake
	// expiryInterval spaces the expiry passes.
	expiryInterval time.Duration
}

// config checks the event flags and reads the files they name.
func (f eventFlags) config() (eventsConfig, error) {
	var leads []time.Duration
	for _, s := range f.ExpiryLeads {
		d, err := keystore.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return eventsConfig{}, usageError("--expiry-leads: %q: want durations like 14d,3d,1d", s)
		}
		leads = append(leads, d)
	}
	leads, err := keystore.NormalizeExpiryLeads(leads)
	if err != nil {
		return eventsConfig{}, usageError("--expiry-leads: %v", err)
	}
	if f.ExpiryInterval <= 0 {
		return eventsConfig{}, usageError("--expiry-interval: must be positive")
	}
	cfg := eventsConfig{leads: leads, guard: &webhook.Guard{AllowLinkLocal: f.WebhookAllowLinkLocal}, expiryInterval: time.Duration(f.ExpiryInterval)}
	if f.LeaksGitHubKeysFile == "" && f.LeaksGitLabTokenFile == "" {
		return cfg, nil
	}
	cfg.leaks = &admin.LeakIntake{Policy: f.LeaksPolicy, TokenTypes: []string{"gitleaks_rule_id_keygate_api_key"}}
	if f.LeaksGitHubKeysFile != "" {
		if cfg.leaks.GitHubKeys, err = admin.LoadGitHubKeys(f.LeaksGitHubKeysFile); err != nil {
			return eventsConfig{}, usageError("--leaks-github-keys-file: %s", oneLineError(err))
		}
	}
	if f.LeaksGitLabTokenFile != "" {
		b, err := os.ReadFile(f.LeaksGitLabTokenFile)
		if err != nil {
			return eventsConfig{}, usageError("--leaks-gitlab-token-file: %v", err)
		}
		if cfg.leaks.GitLabToken = strings.TrimSpace(string(b)); len(cfg.leaks.GitLabToken) < 16 {
			return eventsConfig{}, usageError("--leaks-gitlab-token-file: the token must be at least 16 characters")
		}
	}
	return cfg, nil
}

// admin is the admin API's part of the configuration.
func (c eventsConfig) admin() admin.EventsConfig {
	return admin.EventsConfig{CheckURL: c.guard.CheckURL, ExpiryLeads: c.leads, Leaks: c.leaks}
}

// eventWorkers deliver webhooks and send expiry warnings, off the
// decision path.
type eventWorkers struct {
	deliverer *webhook.Deliverer
	warner    *keystore.ExpiryWarner
}

// buildEvents makes the event workers once the listeners are open:
// deliveries never reach the admin listener's address.
func (s *server) buildEvents(reg prometheus.Registerer) error {
	if a := s.admin.addr(); a != nil {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			s.cfg.events.guard.Forbidden = append(s.cfg.events.guard.Forbidden, ap)
		}
	}
	d, err := webhook.New(webhook.Options{Store: s.db.store, Guard: s.cfg.events.guard, Logger: s.logger})
	if err != nil {
		return err
	}
	s.events = &eventWorkers{deliverer: d, warner: keystore.NewExpiryWarner(s.db.store, s.cfg.events.leads, s.cfg.events.expiryInterval, s.logger)}
	registerEventMetrics(reg, s.events)
	return nil
}

// start runs the workers until ctx ends.
func (w *eventWorkers) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { w.deliverer.Run(ctx) })
	wg.Go(func() { w.warner.Run(ctx) })
}

// registerEventMetrics: the keys expiring within each lead time (one
// series per lead time, never per key or account), and what the workers
// did.
func registerEventMetrics(reg prometheus.Registerer, w *eventWorkers) {
	for i, lead := range w.warner.Leads() {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "keygate_keys_expiring",
			Help:        "Active keys that expire within the lead time (within), as the last expiry pass counted them (every minute); the same on every replica.",
			ConstLabels: prometheus.Labels{"within": keystore.FormatDuration(lead)},
		}, func() float64 {
			counts, _ := w.warner.Counts()
			if i >= len(counts) {
				return 0
			}
			return float64(counts[i])
		}))
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_expiry_warnings_total",
		Help: "key.expiring and key.expired events this replica wrote."}, func() float64 { _, sent := w.warner.Counts(); return float64(sent) }))
	st := w.deliverer.Stats()
	for outcome, c := range map[string]func() uint64{
		"delivered": st.Delivered.Load, "retried": st.Retried.Load, "failed": st.Failed.Load,
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_webhook_attempts_total",
			Help:        "Webhook delivery attempts this replica made, by outcome: delivered (2xx), retried (to be tried again), failed (given up).",
			ConstLabels: prometheus.Labels{"outcome": outcome}}, func() float64 { return float64(c()) }))
	}
}

// keysWhoamiCmd answers "what is this key?" for a string someone pasted.
type keysWhoamiCmd struct {
	dbFlags
	keyFlags
	outputFlag
	// Key catches a key given as an argument, to refuse it without
	// repeating it.
	Key []string `arg:"" optional:"" hidden:""`
}

// maxWhoamiInput bounds what whoami reads from standard input.
const maxWhoamiInput = 4 << 10

func (c *keysWhoamiCmd) Run(e *env) error {
	if len(c.Key) > 0 {
		return usageError("keys whoami reads the key from standard input, never from an argument (arguments stay in shell history and process lists): " +
			"keygate keys whoami < file, or paste it when asked")
	}
	if e.stdin == nil {
		return usageError("keys whoami reads the key from standard input: echo \"$KEY\" | keygate keys whoami")
	}
	if e.interactive() {
		fmt.Fprint(e.stderr, "Paste the key, then press Enter: ")
	}
	line, err := bufio.NewReader(io.LimitReader(e.stdin, maxWhoamiInput)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading standard input: %v", err)
	}
	secret, err := keystore.ParseSecret(strings.TrimSpace(line))
	if err != nil {
		return usageError("standard input does not hold a keygate key (the shape or the checksum is wrong)")
	}
	store, closeStore, err := c.dbFlags.openStore(e, &c.keyFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	k, err := store.LookupKey(e.ctx, secret)
	if errors.Is(err, keystore.ErrNotFound) {
		return errors.New("no key of this store has this value")
	}
	if err != nil {
		return c.storeError(err, "")
	}
	return printKey(e.stdout, c.Output, k)
}

// webhooksCmd manages webhook endpoints.
type webhooksCmd struct {
	Create       webhooksCreateCmd       `cmd:"" help:"Register a webhook endpoint and print its signing secret, once."`
	List         webhooksListCmd         `cmd:"" help:"List webhook endpoints (never their secrets)."`
	Show         webhooksShowCmd         `cmd:"" help:"Show one webhook endpoint."`
	Update       webhooksUpdateCmd       `cmd:"" help:"Change a webhook endpoint: its URL, description, event types, or whether it is enabled."`
	Delete       webhooksDeleteCmd       `cmd:"" help:"Delete a webhook endpoint and its delivery log."`
	RotateSecret webhooksRotateSecretCmd `cmd:"" name:"rotate-secret" help:"Give an endpoint a new signing secret; the old one keeps signing for --overlap."`
	Deliveries   webhooksDeliveriesCmd   `cmd:"" help:"Show an endpoint's delivery log, newest first."`
	Redeliver    webhooksRedeliverCmd    `cmd:"" help:"Send a delivery again."`
}

type webhooksCreateCmd struct {
	dbFlags
	outputFlag
	URL            string   `required:"" name:"url" help:"The http(s) URL events are posted to."`
	Event          []string `placeholder:"TYPE" help:"An event type to send (repeat for several): key.created, key.updated, key.rotated, key.revoked, key.disabled, key.enabled, key.expiring, key.expired, key.leaked. None: every type."`
	Account        string   `placeholder:"ID" help:"Only this account's keys' events. Default: every account."`
	Description    string   `help:"What the endpoint is for."`
	AllowLinkLocal bool     `help:"Accept a URL that leads to a link-local or metadata address (serve needs --webhook-allow-link-local too)."`
}

func (c *webhooksCreateCmd) Run(e *env) error {
	if err := (&webhook.Guard{AllowLinkLocal: c.AllowLinkLocal}).CheckURL(e.ctx, c.URL); err != nil {
		return urlError(err)
	}
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	ep, err := store.CreateEndpoint(e.ctx, keystore.EndpointParams{URL: c.URL, Description: c.Description, EventTypes: c.Event, AccountID: c.Account})
	if err != nil {
		return c.webhookStoreError(err)
	}
	return printWebhookSecret(e.stdout, c.Output, ep, "Registered")
}

func printWebhookSecret(w io.Writer, format string, ep *keystore.Endpoint, verb string) error {
	if format == "json" {
		return writeJSON(w, admin.NewWebhookWithSecret(ep, time.Now()))
	}
	fmt.Fprintf(w, "%s webhook %s for %s.\n\n  %s\n\n", verb, ep.ID, ep.URL, ep.Secret.Reveal())
	fmt.Fprintln(w, "Copy the signing secret now: it is shown only this once. Receivers verify deliveries with it (Standard Webhooks).")
	return nil
}

// urlError is the error of a webhook URL the guard refused: a usage error
// naming --url when the URL is wrong.
func urlError(err error) error {
	if fe := flagError(err); fe != nil {
		return fe
	}
	return err
}

// webhookStoreError is storeError for webhook commands.
func (f dbFlags) webhookStoreError(err error) error {
	if errors.Is(err, keystore.ErrNotFound) {
		return errors.New("no such webhook (or delivery)")
	}
	return f.storeError(err, "")
}

type webhooksListCmd struct {
	dbFlags
	outputFlag
	Account string `placeholder:"ID" help:"Only this account's endpoints."`
}

func (c *webhooksListCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	eps, err := store.Endpoints(e.ctx, c.Account)
	if err != nil {
		return c.webhookStoreError(err)
	}
	now := time.Now()
	if c.Output == "json" {
		out := make([]admin.Webhook, len(eps))
		for i, ep := range eps {
			out[i] = admin.NewWebhook(ep, now)
		}
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tURL\tEVENTS\tACCOUNT\tENABLED")
	for _, ep := range eps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", ep.ID, oneLine(ep.URL), eventsText(ep.EventTypes), orAll(ep.AccountID), ep.DisabledAt == nil)
	}
	return tw.Flush()
}

func eventsText(types []string) string {
	if len(types) == 0 {
		return "(every type)"
	}
	return strings.Join(types, ",")
}

func orAll(account string) string {
	if account == "" {
		return "(every account)"
	}
	return account
}

type webhooksShowCmd struct {
	dbFlags
	outputFlag
	ID string `arg:"" help:"Endpoint id."`
}

func (c *webhooksShowCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	ep, err := store.Endpoint(e.ctx, c.ID)
	if err != nil {
		return c.webhookStoreError(err)
	}
	return printWebhook(e.stdout, c.Output, ep)
}

func printWebhook(w io.Writer, format string, ep *keystore.Endpoint) error {
	if format == "json" {
		return writeJSON(w, admin.NewWebhook(ep, time.Now()))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	enabled := "yes"
	if ep.DisabledAt != nil {
		enabled = "no, since " + ep.DisabledAt.Format(time.RFC3339) + ": " + oneLine(ep.DisabledReason)
	}
	for _, r := range [][2]string{{"ID", ep.ID}, {"URL", oneLine(ep.URL)}, {"Description", oneLine(ep.Description)},
		{"Events", eventsText(ep.EventTypes)}, {"Account", orAll(ep.AccountID)}, {"Enabled", enabled},
		{"Created", ep.CreatedAt.Format(time.RFC3339)}} {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

type webhooksUpdateCmd struct {
	dbFlags
	outputFlag
	ID             string   `arg:"" help:"Endpoint id."`
	URL            *string  `name:"url" help:"A new URL."`
	Description    *string  `help:"A new description."`
	Event          []string `xor:"events" placeholder:"TYPE" help:"The event types to send from now on (repeat for several)."`
	AllEvents      bool     `xor:"events" help:"Send every event type."`
	Enable         bool     `xor:"state" help:"Enable the endpoint: its pending deliveries go out."`
	Disable        bool     `xor:"state" help:"Disable the endpoint: its deliveries wait."`
	AllowLinkLocal bool     `help:"Accept a URL that leads to a link-local or metadata address."`
}

func (c *webhooksUpdateCmd) Run(e *env) error {
	var ch keystore.EndpointChange
	if c.URL != nil {
		if err := (&webhook.Guard{AllowLinkLocal: c.AllowLinkLocal}).CheckURL(e.ctx, *c.URL); err != nil {
			return urlError(err)
		}
		ch.URL = c.URL
	}
	ch.Description = c.Description
	if len(c.Event) > 0 || c.AllEvents {
		types := slices.Clone(c.Event)
		ch.EventTypes = &types
	}
	if c.Enable || c.Disable {
		ch.Enabled = &c.Enable
	}
	if ch == (keystore.EndpointChange{}) {
		return usageError("nothing to change: give --url, --description, --event, --all-events, --enable or --disable")
	}
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	ep, err := store.UpdateEndpoint(e.ctx, c.ID, ch)
	if err != nil {
		return c.webhookStoreError(err)
	}
	return printWebhook(e.stdout, c.Output, ep)
}

type webhooksDeleteCmd struct {
	dbFlags
	ID string `arg:"" help:"Endpoint id."`
}

func (c *webhooksDeleteCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := store.DeleteEndpoint(e.ctx, c.ID); err != nil {
		return c.webhookStoreError(err)
	}
	fmt.Fprintf(e.stdout, "Deleted webhook %s.\n", c.ID)
	return nil
}

type webhooksRotateSecretCmd struct {
	dbFlags
	outputFlag
	ID      string   `arg:"" help:"Endpoint id."`
	Overlap duration `default:"24h" placeholder:"DURATION" help:"How long the old secret keeps signing too, 0s to 7d."`
}

func (c *webhooksRotateSecretCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	ep, err := store.RotateEndpointSecret(e.ctx, c.ID, time.Duration(c.Overlap))
	if err != nil {
		return c.webhookStoreError(err)
	}
	return printWebhookSecret(e.stdout, c.Output, ep, "New signing secret of")
}

type webhooksDeliveriesCmd struct {
	dbFlags
	outputFlag
	ID    string `arg:"" help:"Endpoint id."`
	Limit int    `default:"${page_size}" help:"Most deliveries shown, 1 to ${max_deliveries_page}."`
}

func (c *webhooksDeliveriesCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	ds, err := store.Deliveries(e.ctx, keystore.DeliveryQuery{EndpointID: c.ID, Limit: c.Limit})
	if err != nil {
		return c.webhookStoreError(err)
	}
	if c.Output == "json" {
		out := make([]admin.Delivery, len(ds))
		for i, d := range ds {
			out[i] = admin.NewDelivery(d)
		}
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEVENT\tTYPE\tSTATE\tATTEMPTS\tLAST STATUS\tNEXT ATTEMPT\tLAST ERROR")
	for _, d := range ds {
		status := "-"
		if d.LastStatus != 0 {
			status = strconv.Itoa(d.LastStatus)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.EventID, d.EventType, d.State, d.Attempts, status,
			timeText(d.NextAttemptAt, "-"), oneLine(d.LastError))
	}
	return tw.Flush()
}

type webhooksRedeliverCmd struct {
	dbFlags
	ID       string `arg:"" help:"Endpoint id."`
	Delivery int64  `arg:"" help:"Delivery id (from 'webhooks deliveries')."`
}

func (c *webhooksRedeliverCmd) Run(e *env) error {
	store, closeStore, err := c.dbFlags.openStore(e, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := store.Redeliver(e.ctx, c.ID, c.Delivery); err != nil {
		return c.webhookStoreError(err)
	}
	fmt.Fprintf(e.stdout, "Delivery %d of webhook %s is queued again.\n", c.Delivery, c.ID)
	return nil
}
