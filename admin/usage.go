package admin

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// QuotaUsage is how much of its quota a key has spent in the current UTC
// period, as written so far (the replicas write usage in batches, so the
// last flush interval's requests may not be in it yet).
type QuotaUsage struct {
	Quota     string    `json:"quota"`
	Used      int64     `json:"used"`
	Remaining int64     `json:"remaining"`
	ResetsAt  time.Time `json:"resets_at"`
}

// NewQuotaUsage is the JSON shape of a key's quota with used of it spent
// at now; nil for a key without a quota.
func NewQuotaUsage(k *keystore.Key, used int64, now time.Time) *QuotaUsage {
	q := k.Limits.Quota
	if q.Period == keystore.NoQuota {
		return nil
	}
	return &QuotaUsage{Quota: q.String(), Used: used, Remaining: max(q.Count-used, 0), ResetsAt: q.Period.End(now)}
}

// Usage is the JSON shape of a key's usage (GET /v1/keys/{id}/usage and
// keygate keys usage -o json): buckets of step_seconds from from to to,
// each with its allowed and denied decisions and the counts by outcome.
type Usage struct {
	KeyID       string           `json:"key_id"`
	From        time.Time        `json:"from"`
	To          time.Time        `json:"to"`
	StepSeconds int64            `json:"step_seconds"`
	Limits      []string         `json:"limits"`
	Quota       *string          `json:"quota"`
	Totals      UsageCounts      `json:"totals"`
	Buckets     []UsageBucketOut `json:"buckets"`
}

// UsageCounts are counts of decisions: allowed ("ok"), denied (every
// other outcome), and by outcome.
type UsageCounts struct {
	Allowed   int64            `json:"allowed"`
	Denied    int64            `json:"denied"`
	ByOutcome map[string]int64 `json:"by_outcome"`
}

// UsageBucketOut is one bucket of Usage.
type UsageBucketOut struct {
	Start time.Time `json:"start"`
	UsageCounts
}

// NewUsage is the JSON shape of a key's usage series.
func NewUsage(k *keystore.Key, s *keystore.UsageSeries) Usage {
	out := Usage{KeyID: s.KeyID, From: s.From, To: s.To, StepSeconds: int64(s.Step / time.Second), Limits: k.Limits.Strings(),
		Quota: optional(k.Limits.Quota.String()), Totals: newUsageCounts(s.Totals), Buckets: make([]UsageBucketOut, len(s.Buckets))}
	for i, b := range s.Buckets {
		out.Buckets[i] = UsageBucketOut{Start: b.Start, UsageCounts: newUsageCounts(b.Counts)}
	}
	return out
}

func newUsageCounts(m map[string]int64) UsageCounts {
	c := UsageCounts{ByOutcome: map[string]int64{}}
	for o, n := range m {
		c.ByOutcome[o] = n
		if o == keystore.UsageAllowed {
			c.Allowed += n
		} else {
			c.Denied += n
		}
	}
	return c
}

// Usage query defaults: the last 24 hours by the hour.
const (
	DefaultUsageRange = 24 * time.Hour
	DefaultUsageStep  = time.Hour
)

// UsageQuery reads from, to and step (RFC 3339 times, a duration like
// 1h or 1d, or a number of seconds) as GET …/usage and keygate keys
// usage take them: to defaults to now, from to a day before to, step to
// an hour. Problems are named by parameter.
func UsageQuery(from, to, step string, now time.Time) (time.Time, time.Time, time.Duration, error) {
	t, f, st := now.UTC(), time.Time{}, DefaultUsageStep
	var problems []error
	if to != "" {
		v, err := time.Parse(time.RFC3339, to)
		if err != nil {
			problems = append(problems, &keystore.ValidationError{Field: "to", Problem: "must be an RFC 3339 time like 2026-12-01T00:00:00Z"})
		}
		t = v
	}
	if from != "" {
		v, err := time.Parse(time.RFC3339, from)
		if err != nil {
			problems = append(problems, &keystore.ValidationError{Field: "from", Problem: "must be an RFC 3339 time like 2026-12-01T00:00:00Z"})
		}
		f = v
	} else {
		f = t.Add(-DefaultUsageRange)
	}
	if step != "" {
		if n, err := strconv.ParseInt(step, 10, 64); err == nil && n > 0 && n < 1<<31 {
			st = time.Duration(n) * time.Second
		} else if d, err := keystore.ParseDuration(step); err == nil {
			st = d
		} else {
			problems = append(problems, &keystore.ValidationError{Field: "step", Problem: "must be a duration like 1m, 1h or 1d, or seconds"})
		}
	}
	if len(problems) > 0 {
		return f, t, st, problems[0]
	}
	return f, t, st, keystore.CheckUsageRange(f, t, st)
}

var usageParams = []string{"from", "to", "step"}

// keyUsage is GET /v1/keys/{id}/usage?from=&to=&step=.
func (s *Server) keyUsage(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	query, errs, prob := readQuery(r, usageParams)
	if prob != nil {
		return prob
	}
	if prob := errs.problem(usageParams...); prob != nil {
		return prob
	}
	from, to, step, err := UsageQuery(query.Get("from"), query.Get("to"), query.Get("step"), s.now())
	if err != nil {
		addValidation(&errs, err)
		return errs.problem(usageParams...)
	}
	k, prob := s.key(r, p)
	if prob != nil {
		return prob
	}
	series, err := s.store.Usage(r.Context(), k.ID, from, to, step)
	if err != nil {
		if addValidation(&errs, err); len(errs) > 0 {
			return errs.problem(usageParams...)
		}
		return s.storeProblem(err)
	}
	writeJSON(w, http.StatusOK, NewUsage(k, series))
	return nil
}

// TopKey is one key of GET /v1/usage/top.
type TopKey struct {
	KeyID     string `json:"key_id"`
	AccountID string `json:"account_id"`
	Name      string `json:"name"`
	Allowed   int64  `json:"allowed"`
	Denied    int64  `json:"denied"`
	Total     int64  `json:"total"`
}

var topParams = []string{"account_id", "from", "to", "limit"}

// topUsage is GET /v1/usage/top?account_id=&from=&to=&limit=: the keys
// with the most decisions (an account-bound token: its account's).
func (s *Server) topUsage(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	query, errs, prob := readQuery(r, topParams)
	if prob != nil {
		return prob
	}
	account := query.Get("account_id")
	if query.Has("account_id") && !errs.has("account_id") {
		addValidation(&errs, keystore.ValidateAccountID(account))
	}
	limit := 10
	if v := query.Get("limit"); query.Has("limit") && !errs.has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			errs.add("limit", "must be a whole number from 1 to 100")
		}
		limit = n
	}
	from, to, _, err := UsageQuery(query.Get("from"), query.Get("to"), "", s.now())
	if err != nil && !errs.has("from") {
		addValidation(&errs, err)
	}
	if prob := errs.problem(topParams...); prob != nil {
		return prob
	}
	switch {
	case p.Account != "" && account != "" && account != p.Account:
		return newProblem(probForbidden, "This admin token manages one account's keys; it may not see another's usage.")
	case p.Account != "":
		account = p.Account
	}
	top, err := s.store.TopUsage(r.Context(), account, from, to, limit)
	if err != nil {
		return s.storeProblem(err)
	}
	out := struct {
		From  time.Time `json:"from"`
		To    time.Time `json:"to"`
		Items []TopKey  `json:"items"`
	}{From: from, To: to, Items: make([]TopKey, 0, len(top))}
	for _, u := range top {
		out.Items = append(out.Items, TopKey{KeyID: u.KeyID, AccountID: u.AccountID, Name: u.Name, Allowed: u.Allowed,
			Denied: u.Total - u.Allowed, Total: u.Total})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// readQuery reads r's query string: each parameter known, and given once;
// the others are field errors. A query string that does not parse is a
// problem of its own.
func readQuery(r *http.Request, known []string) (url.Values, fieldErrors, *problem) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, nil, newProblem(probInvalid, "The query string is not valid.")
	}
	var errs fieldErrors
	for name, values := range query {
		switch {
		case !slices.Contains(known, name):
			errs.add(fieldName(name), "unknown parameter: want "+strings.Join(known, ", "))
		case len(values) > 1:
			errs.add(name, "given more than once")
		}
	}
	return query, errs, nil
}
