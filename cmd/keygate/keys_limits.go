package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// limitKeyFlags give a new key its limits.
type limitKeyFlags struct {
	Limit []string `sep:"none" placeholder:"COUNT/WINDOW" help:"A rate keygate enforces: COUNT/WINDOW with WINDOW s, m, h or d (100/s, 6000/m, 500/10s), optionally ,burst=N (default COUNT); repeat for several windows, at most 4. Over it: 429 rate_limited."`
	Quota string   `placeholder:"COUNT/PERIOD" help:"An allowance per UTC calendar day or month: 50000/day or 1000000/month. Spent: 429 quota_exhausted until the period ends."`
}

// limitUpdateFlags change a key's limits.
type limitUpdateFlags struct {
	Limit       []string `xor:"limits" sep:"none" placeholder:"COUNT/WINDOW" help:"Replace the key's rates (repeat for several)."`
	ClearLimits bool     `xor:"limits" help:"Remove the key's rates."`
	Quota       string   `xor:"quota" placeholder:"COUNT/PERIOD" help:"Replace the key's quota: 50000/day or 1000000/month."`
	ClearQuota  bool     `xor:"quota" help:"Remove the key's quota."`
}

// apply adds the limits change the flags ask for to p.
func (f limitUpdateFlags) apply(p *keystore.UpdateParams) {
	var c keystore.LimitsChange
	switch {
	case f.ClearLimits:
		c.Rates = &[]string{}
	case f.Limit != nil:
		c.Rates = &f.Limit
	}
	switch {
	case f.ClearQuota:
		c.Quota = new(string)
	case f.Quota != "":
		c.Quota = &f.Quota
	}
	if c.Rates != nil || c.Quota != nil {
		p.Limits = &c
	}
}

// limitsText is a key's limits for people.
func limitsText(l keystore.Limits) string {
	if len(l.Rates) == 0 {
		return "-"
	}
	return strings.Join(l.Strings(), " ")
}

// quotaText is a key's quota and what is left of it, for people.
func quotaText(q *admin.QuotaUsage, k *keystore.Key) string {
	switch {
	case k.Limits.Quota.Period == keystore.NoQuota:
		return "-"
	case q == nil:
		return k.Limits.Quota.String()
	}
	return fmt.Sprintf("%s: %d used, %d left until %s", q.Quota, q.Used, q.Remaining, q.ResetsAt.Format(time.RFC3339))
}

type keysUsageCmd struct {
	dbFlags
	outputFlag
	ID   string `arg:"" help:"Key id."`
	From string `placeholder:"TIME" help:"Start, RFC 3339. Default: a day before --to."`
	To   string `placeholder:"TIME" help:"End, RFC 3339. Default: now."`
	Step string `placeholder:"DURATION" help:"Bucket size, whole minutes: 1m, 15m, 1h, 1d. Default: 1h."`
}

// Run prints the key's decisions per bucket: allowed, denied, and the
// denials by outcome.
func (c *keysUsageCmd) Run(e *env) error {
	from, to, step, err := admin.UsageQuery(c.From, c.To, c.Step, time.Now())
	if err != nil {
		return c.storeError(err, c.ID)
	}
	store, k, closeStore, err := c.dbFlags.openKey(e, c.ID)
	if err != nil {
		return err
	}
	defer closeStore()
	series, err := store.Usage(e.ctx, k.ID, from, to, step)
	if err != nil {
		return c.storeError(err, c.ID)
	}
	u := admin.NewUsage(k, series)
	if c.Output == "json" {
		return writeJSON(e.stdout, u)
	}
	fmt.Fprintf(e.stdout, "Key %s (%s): limits %s, quota %s\n", k.ID, oneLine(k.Name), limitsText(k.Limits), quotaText(nil, k))
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "START\tALLOWED\tDENIED\tDENIED BY OUTCOME")
	row := func(label string, n admin.UsageCounts) {
		var parts []string
		for o, v := range n.ByOutcome {
			if o != keystore.UsageAllowed {
				parts = append(parts, fmt.Sprintf("%s=%d", o, v))
			}
		}
		by := strings.Join(slices.Sorted(slices.Values(parts)), " ")
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", label, n.Allowed, n.Denied, by)
	}
	for _, b := range u.Buckets {
		row(b.Start.Format(time.RFC3339), b.UsageCounts)
	}
	row("TOTAL", u.Totals)
	return w.Flush()
}
