package keystore

import (
	"time"
)

// DefaultLifetime is how long a key lives when its creator chooses no
// expiry at all (neither a lifetime, a date, nor "never").
const DefaultLifetime = 90 * 24 * time.Hour

// MinLifetime is the shortest lifetime a key may be given, at creation,
// rotation or a change of expiry: a key must not be born expired, nor
// expire before a replica has heard of it.
const MinLifetime = time.Minute

// Expiry is a key's chosen lifetime: at most one of its fields is set. The
// zero value means DefaultLifetime (capped by the store's MaxLifetime).
type Expiry struct {
	In    time.Duration // expires this long after now
	At    time.Time     // expires at this instant
	Never bool          // never expires
}

// IsZero reports whether e chooses nothing (DefaultLifetime).
func (e Expiry) IsZero() bool { return e.In == 0 && e.At.IsZero() && !e.Never }

// check reports a choice that is wrong whatever the time: more than one
// choice, or a lifetime that is negative or under MinLifetime.
func (e Expiry) check() error {
	set := 0
	for _, b := range []bool{e.In != 0, !e.At.IsZero(), e.Never} {
		if b {
			set++
		}
	}
	switch {
	case set > 1:
		return invalid("expiry", "choose one of a lifetime, an expiry time, or no expiry")
	case e.In < 0:
		return invalid("expiry", "lifetime must be positive")
	case e.In > 0 && e.In < MinLifetime:
		return invalidf("expiry", "lifetime %s is too short: at least %s", FormatDuration(e.In), FormatDuration(MinLifetime))
	}
	return nil
}

// resolve returns the expiry time e chooses at now (nil: never), within
// maxLifetime when it is positive; the zero Expiry is the default
// lifetime.
func (e Expiry) resolve(now time.Time, maxLifetime time.Duration) (*time.Time, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	var at time.Time
	switch {
	case e.Never:
		if maxLifetime > 0 {
			return nil, invalidf("expiry", "keys must expire: the maximum lifetime is %s", FormatDuration(maxLifetime))
		}
		return nil, nil
	case e.In > 0:
		at = now.Add(e.In).Truncate(time.Microsecond)
	case !e.At.IsZero():
		at = e.At.UTC().Truncate(time.Microsecond)
		if !at.After(now) {
			return nil, invalidf("expiry", "expiry time %s is not in the future", at.Format(time.RFC3339))
		}
		if at.Sub(now) < MinLifetime {
			return nil, invalidf("expiry", "expiry time %s is too soon: at least %s from now", at.Format(time.RFC3339), FormatDuration(MinLifetime))
		}
	default:
		at = now.Add(defaultLifetime(maxLifetime))
	}
	if maxLifetime > 0 && at.Sub(now) > maxLifetime {
		return nil, invalidf("expiry", "exceeds the maximum lifetime of %s", FormatDuration(maxLifetime))
	}
	return &at, nil
}

func defaultLifetime(maxLifetime time.Duration) time.Duration {
	if maxLifetime > 0 && maxLifetime < DefaultLifetime {
		return maxLifetime
	}
	return DefaultLifetime
}
