package keystore

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a duration in Go syntax ("1h30m") extended with days
// ("30d", "1d12h"). It rejects negative and empty durations.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration: want Go syntax plus days, like 30d, 12h or 1d12h")
	}
	var days time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: want Go syntax plus days, like 30d, 12h or 1d12h", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		rest = s[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil || strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
			return 0, fmt.Errorf("invalid duration %q: want Go syntax plus days, like 30d, 12h or 1d12h", s)
		}
	}
	if d < 0 || days+d < days {
		return 0, fmt.Errorf("invalid duration %q: out of range", s)
	}
	return days + d, nil
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
