package keystore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits are what one key may spend: rates (each at most Count requests
// per window, with bursts up to Burst) and a quota (an allowance per UTC
// calendar day or month). The zero value limits nothing. keygate enforces
// them after the key is authenticated (package limits counts).
type Limits struct {
	Rates []Rate // sorted by window, at most MaxRates, one per window
	Quota Quota  // Period NoQuota: none
}

// Rate allows Count requests per Per on average, and bursts of up to
// Burst requests at once (a token bucket of Burst tokens refilled at
// Count/Per, counted as GCRA).
type Rate struct {
	Count int64
	Per   time.Duration // a whole number of seconds, 1s to MaxRateWindow
	Burst int64         // at least 1; Count unless given
}

// Quota is an allowance of Count requests per UTC calendar day or month.
type Quota struct {
	Count  int64
	Period QuotaPeriod
}

// QuotaPeriod is the calendar period of a quota.
type QuotaPeriod uint8

// The quota periods.
const (
	NoQuota    QuotaPeriod = iota // no quota
	QuotaDay                      // a UTC calendar day
	QuotaMonth                    // a UTC calendar month
)

// Bounds on limits.
const (
	MaxRates       = 4                   // rates on one key
	MaxLimitCount  = 1_000_000_000_000   // a rate's count or burst, a quota's allowance
	MaxRatePerSec  = 1_000_000           // the highest average rate: a million a second
	MaxRateWindow  = 30 * 24 * time.Hour // the longest window of a rate
	rateSyntaxHelp = "want COUNT/WINDOW like 100/s, 6000/m, 50000/d or 500/10s, optionally with ,burst=N"
)

// IsZero reports whether l limits nothing.
func (l Limits) IsZero() bool { return len(l.Rates) == 0 && l.Quota.Period == NoQuota }

// Strings spells the rates as ParseRate reads them.
func (l Limits) Strings() []string {
	out := make([]string, len(l.Rates))
	for i, r := range l.Rates {
		out[i] = r.String()
	}
	return out
}

// String spells the rate as ParseRate reads it: "100/s", "500/10s",
// "100/s,burst=300".
func (r Rate) String() string {
	s := strconv.FormatInt(r.Count, 10) + "/" + windowText(r.Per)
	if r.Burst != r.Count {
		s += ",burst=" + strconv.FormatInt(r.Burst, 10)
	}
	return s
}

// Window names the rate's window as the RateLimit-Policy field does: its
// length in seconds.
func (r Rate) Window() int64 { return int64(r.Per / time.Second) }

// Interval is the time one request costs: Per/Count.
func (r Rate) Interval() time.Duration { return r.Per / time.Duration(r.Count) }

// windowText spells a window: "s", "m", "h", "d" for one unit, else the
// number of the largest unit that divides it ("10s", "5m", "7d").
func windowText(d time.Duration) string {
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.unit == 0 {
			if n := d / u.unit; n != 1 {
				return strconv.FormatInt(int64(n), 10) + u.name
			}
			return u.name
		}
	}
	return d.String()
}

// String spells the quota as ParseQuota reads it ("50000/day"), "" for
// none.
func (q Quota) String() string {
	if q.Period == NoQuota {
		return ""
	}
	return strconv.FormatInt(q.Count, 10) + "/" + q.Period.String()
}

// String names the period: "day" or "month" ("" for none).
func (p QuotaPeriod) String() string {
	switch p {
	case QuotaDay:
		return "day"
	case QuotaMonth:
		return "month"
	}
	return ""
}

// Start is the UTC start of the period that holds t.
func (p QuotaPeriod) Start(t time.Time) time.Time {
	t = t.UTC()
	switch p {
	case QuotaMonth:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	default:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
}

// End is the UTC end of the period that holds t: when its allowance
// resets.
func (p QuotaPeriod) End(t time.Time) time.Time {
	s := p.Start(t)
	if p == QuotaMonth {
		return s.AddDate(0, 1, 0)
	}
	return s.AddDate(0, 0, 1)
}

// ParseRate reads one rate: COUNT/WINDOW with WINDOW s, m, h or d,
// optionally after a whole number ("500/10s"), and optionally ",burst=N"
// (default: COUNT). Its errors are *ValidationError for field "limits".
func ParseRate(s string) (Rate, error) {
	spec, burst, hasBurst := strings.Cut(s, ",")
	count, window, ok := strings.Cut(spec, "/")
	if !ok {
		return Rate{}, invalidf("limits", "%s: %s", echo(s), rateSyntaxHelp)
	}
	var r Rate
	var err error
	if r.Count, err = limitNumber(count); err != nil {
		return Rate{}, invalidf("limits", "%s: the count %v", echo(s), err)
	}
	if r.Per, err = parseWindow(window); err != nil {
		return Rate{}, invalidf("limits", "%s: %v", echo(s), err)
	}
	r.Burst = r.Count
	if hasBurst {
		v, ok := strings.CutPrefix(burst, "burst=")
		if !ok {
			return Rate{}, invalidf("limits", "%s: after the comma, want burst=N, like 100/s,burst=300", echo(s))
		}
		if r.Burst, err = limitNumber(v); err != nil {
			return Rate{}, invalidf("limits", "%s: the burst %v", echo(s), err)
		}
	}
	if err := r.check(); err != nil {
		return Rate{}, invalidf("limits", "%s: %v", echo(s), err)
	}
	return r, nil
}

// check reports what is wrong with a rate built in code.
func (r Rate) check() error {
	switch {
	case r.Count < 1 || r.Count > MaxLimitCount:
		return fmt.Errorf("the count must be from 1 to %d", int64(MaxLimitCount))
	case r.Burst < 1 || r.Burst > MaxLimitCount:
		return fmt.Errorf("the burst must be from 1 to %d", int64(MaxLimitCount))
	case r.Per < time.Second || r.Per > MaxRateWindow || r.Per%time.Second != 0:
		return fmt.Errorf("the window must be whole seconds from 1s to 30d")
	case float64(r.Count)/r.Per.Seconds() > MaxRatePerSec:
		return fmt.Errorf("at most %d a second on average", MaxRatePerSec)
	}
	return nil
}

// limitNumber reads a count: a whole number from 1 to MaxLimitCount.
func limitNumber(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil && strings.TrimLeft(s, "0123456789") == "" && s != "":
		return 0, fmt.Errorf("is too large: at most %d", int64(MaxLimitCount))
	case err != nil:
		return 0, fmt.Errorf("%s is not a whole number", echo(s))
	case n <= 0:
		return 0, fmt.Errorf("must be positive, got %d", n)
	case n > MaxLimitCount:
		return 0, fmt.Errorf("is too large: at most %d", int64(MaxLimitCount))
	case strconv.FormatInt(n, 10) != s:
		return 0, fmt.Errorf("%s is not written as a plain whole number", echo(s))
	}
	return n, nil
}

// parseWindow reads a rate's window: s, m, h or d, optionally after a
// whole number of them.
func parseWindow(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("no window after the '/': want s, m, h or d, like 100/s")
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 's':
		unit = time.Second
	case 'm':
		unit = time.Minute
	case 'h':
		unit = time.Hour
	case 'd':
		unit = 24 * time.Hour
	default:
		return 0, fmt.Errorf("unknown window %s: want s, m, h or d, optionally after a number, like 10s", echo(s))
	}
	n := int64(1)
	if digits := s[:len(s)-1]; digits != "" {
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || v <= 0 || strconv.FormatInt(v, 10) != digits {
			return 0, fmt.Errorf("unknown window %s: want s, m, h or d, optionally after a positive number, like 10s", echo(s))
		}
		if v > int64(MaxRateWindow/unit) {
			return 0, fmt.Errorf("window %s is longer than 30d", echo(s))
		}
		n = v
	}
	return time.Duration(n) * unit, nil
}

// ParseQuota reads a quota: COUNT/day or COUNT/month (UTC calendar
// periods). Its errors are *ValidationError for field "quota".
func ParseQuota(s string) (Quota, error) {
	count, period, ok := strings.Cut(s, "/")
	if !ok {
		return Quota{}, invalidf("quota", "%s: want COUNT/day or COUNT/month, like 50000/day", echo(s))
	}
	var q Quota
	switch period {
	case "day":
		q.Period = QuotaDay
	case "month":
		q.Period = QuotaMonth
	default:
		return Quota{}, invalidf("quota", "%s: unknown period %s: want day or month (UTC calendar)", echo(s), echo(period))
	}
	n, err := limitNumber(count)
	if err != nil {
		return Quota{}, invalidf("quota", "%s: the count %v", echo(s), err)
	}
	q.Count = n
	return q, nil
}

// ParseLimits reads a key's rates (ParseRate each) and quota (ParseQuota,
// "" for none), and checks them together (NormalizeLimits).
func ParseLimits(rates []string, quota string) (Limits, error) {
	var l Limits
	if len(rates) > MaxRates {
		return Limits{}, invalidf("limits", "at most %d limits, got %d", MaxRates, len(rates))
	}
	for _, s := range rates {
		r, err := ParseRate(s)
		if err != nil {
			return Limits{}, err
		}
		l.Rates = append(l.Rates, r)
	}
	if quota != "" {
		q, err := ParseQuota(quota)
		if err != nil {
			return Limits{}, err
		}
		l.Quota = q
	}
	return NormalizeLimits(l)
}

// NormalizeLimits checks limits (each rate valid, at most MaxRates, one
// per window; a quota no smaller than any rate's burst, which could never
// be spent) and returns them with the rates sorted by window.
func NormalizeLimits(l Limits) (Limits, error) {
	if len(l.Rates) > MaxRates {
		return Limits{}, invalidf("limits", "at most %d limits, got %d", MaxRates, len(l.Rates))
	}
	rates := slices.Clone(l.Rates)
	for _, r := range rates {
		if err := r.check(); err != nil {
			return Limits{}, invalidf("limits", "%s: %v", r.String(), err)
		}
	}
	slices.SortFunc(rates, func(a, b Rate) int { return int(a.Per/time.Second - b.Per/time.Second) })
	for i := 1; i < len(rates); i++ {
		if rates[i].Per == rates[i-1].Per {
			return Limits{}, invalidf("limits", "two limits per %s: give one per window", windowText(rates[i].Per))
		}
	}
	switch q := l.Quota; {
	case q.Period == NoQuota && q.Count != 0:
		return Limits{}, invalid("quota", "a quota needs a period: day or month")
	case q.Period > QuotaMonth:
		return Limits{}, invalid("quota", "unknown period: want day or month")
	case q.Period != NoQuota && (q.Count < 1 || q.Count > MaxLimitCount):
		return Limits{}, invalidf("quota", "the count must be from 1 to %d", int64(MaxLimitCount))
	case q.Period != NoQuota:
		for _, r := range rates {
			if q.Count < r.Burst {
				return Limits{}, invalidf("quota", "%s is below the burst of %s (%d): the burst could never be spent", q, r, r.Burst)
			}
		}
	}
	if len(rates) == 0 {
		rates = nil
	}
	return Limits{Rates: rates, Quota: l.Quota}, nil
}

// limitsJSON is how limits are stored: the rates and the quota as
// ParseRate and ParseQuota read them.
type limitsJSON struct {
	Rates []string `json:"rates,omitempty"`
	Quota string   `json:"quota,omitempty"`
}

// MarshalLimits is the stored form of limits: a JSON object with the
// rates and the quota spelled as the CLI takes them, "{}" for none.
func MarshalLimits(l Limits) string {
	if l.IsZero() {
		return "{}"
	}
	b, _ := json.Marshal(limitsJSON{Rates: l.Strings(), Quota: l.Quota.String()}) // strings only: cannot fail
	return string(b)
}

// UnmarshalLimits reads limits as MarshalLimits stores them; limits the
// store would not write are an error, never dropped.
func UnmarshalLimits(s string) (Limits, error) {
	if s == "" || s == "{}" {
		return Limits{}, nil
	}
	var j limitsJSON
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return Limits{}, fmt.Errorf("stored limits: %w", err)
	}
	return ParseLimits(j.Rates, j.Quota)
}

// LimitsChange changes a key's limits: Rates, when not nil, replace its
// rates (empty removes them); Quota, when not nil, replaces its quota (""
// removes it).
type LimitsChange struct {
	Rates *[]string
	Quota *string
}

// apply returns l changed by c, checked.
func (c *LimitsChange) apply(l Limits) (Limits, error) {
	rates, quota := l.Strings(), l.Quota.String()
	if c.Rates != nil {
		rates = *c.Rates
	}
	if c.Quota != nil {
		quota = *c.Quota
	}
	return ParseLimits(rates, quota)
}

// limitsDetail is limits in an audit event's detail.
func limitsDetail(l Limits) map[string]any {
	d := map[string]any{"rates": l.Strings()}
	if q := l.Quota.String(); q != "" {
		d["quota"] = q
	}
	return d
}
