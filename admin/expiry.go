package admin

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/keygate/keygate/keystore"
)

// ExpiresAtForms says what an expiry time may look like, for errors and
// help: the admin API's expires_at and the CLI's --expires-at take the
// same forms (ParseExpiresAt).
const ExpiresAtForms = "an RFC 3339 time like 2027-01-31T12:00:00Z, or a date like 2027-01-31 (the end of that day in UTC)"

// ExpiresInForms says what a lifetime may look like (keystore.ParseDuration).
const ExpiresInForms = `a positive duration like "30d", "12h" or "1d12h"`

// ParseExpiresAt reads an expiry time: RFC 3339, or a plain date, which
// means the end of that day in UTC (2027-01-31 is 2027-01-31T23:59:59Z).
func ParseExpiresAt(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	day, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, errors.New("must be " + ExpiresAtForms)
	}
	return day.Add(24*time.Hour - time.Second), nil
}

// ParseExpiresIn reads a lifetime: a positive keystore duration.
func ParseExpiresIn(s string) (time.Duration, error) {
	d, err := keystore.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("must be " + ExpiresInForms)
	}
	return d, nil
}

// expiryFields are the members that choose an expiry, in a create, a
// change or a rotation.
var expiryFields = []string{"expires_in", "expires_at", "no_expiry"}

// parseExpiry reads the one expiry member a body may give (expires_in,
// expires_at, or no_expiry: true) and returns it and the member that chose
// it, the field an expiry problem concerns; "" when none is given (the
// zero Expiry).
func parseExpiry(members map[string]json.RawMessage, errs *fieldErrors) (keystore.Expiry, string) {
	var in, at string
	var never bool
	decodeMember(members, "expires_in", &in, errs, ExpiresInForms)
	decodeMember(members, "expires_at", &at, errs, ExpiresAtForms)
	decodeMember(members, "no_expiry", &never, errs, "true or false")
	var given []string
	for _, f := range expiryFields {
		if present(members, f) && (f != "no_expiry" || never || errs.has(f)) {
			given = append(given, f)
		}
	}
	var e keystore.Expiry
	switch {
	case len(given) == 0:
		return e, ""
	case len(given) > 1:
		for _, f := range given {
			errs.add(f, "give at most one of expires_in, expires_at and no_expiry")
		}
		return e, given[0]
	case errs.has(given[0]):
		return e, given[0]
	}
	var err error
	switch given[0] {
	case "expires_in":
		e.In, err = ParseExpiresIn(in)
	case "expires_at":
		e.At, err = ParseExpiresAt(at)
	case "no_expiry":
		e.Never = true
	}
	if err != nil {
		errs.add(given[0], err.Error())
	}
	return e, given[0]
}
