package keystore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxDays is the largest number of days ParseDuration reads (about 179
// years).
const MaxDays = 1<<16 - 1

// ParseDuration reads a duration in Go syntax ("1h30m") extended with days
// ("30d", "1d12h"). It rejects negative, empty and too long durations, each
// with its own message.
func ParseDuration(s string) (time.Duration, error) {
	const syntax = "want Go syntax plus days, like 30d, 12h or 1d12h"
	switch {
	case s == "":
		return 0, fmt.Errorf("empty duration: %s", syntax)
	case strings.HasPrefix(s, "-"):
		return 0, fmt.Errorf("negative duration %s: must be positive, like 30d or 12h", echo(s))
	}
	tooLong := fmt.Errorf("duration %s is too long: at most %dd (about 179 years)", echo(s), MaxDays)
	var days time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange), err == nil && n > MaxDays:
			return 0, tooLong
		case err != nil:
			return 0, fmt.Errorf("invalid duration %s: %s", echo(s), syntax)
		}
		days = time.Duration(n) * 24 * time.Hour
		rest = s[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil || strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
			if err != nil && strings.Contains(err.Error(), "invalid duration") && allDigitsAndUnits(rest) {
				return 0, tooLong // time.ParseDuration says overflow this way
			}
			return 0, fmt.Errorf("invalid duration %s: %s", echo(s), syntax)
		}
	}
	if d < 0 || days+d < days {
		return 0, tooLong
	}
	return days + d, nil
}

// allDigitsAndUnits reports whether s looks like a well-formed Go
// duration, so that time.ParseDuration's failure on it is an overflow.
func allDigitsAndUnits(s string) bool {
	for _, u := range []string{"ns", "us", "µs", "ms", "s", "m", "h"} {
		s = strings.ReplaceAll(s, u, "")
	}
	return s != "" && strings.Trim(s, "0123456789.") == ""
}

// FormatDuration prints d with whole days as "d", the inverse of
// ParseDuration for the durations people choose.
func FormatDuration(d time.Duration) string {
	day := 24 * time.Hour
	if d >= day {
		days, rest := d/day, d%day
		if rest == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%s", days, rest)
	}
	return d.String()
}
