package authz

import "github.com/keygate/keygate/internal/failurelimit"

// FailureLimit is a budget of failed attempts (invalid_api_key decisions)
// per source address: a source that made Count of them within the last
// Window is over it. The zero value is no limit.
type FailureLimit = failurelimit.Limit

// Bounds of a FailureLimit.
const (
	MaxFailureCount  = failurelimit.MaxCount
	MinFailureWindow = failurelimit.MinWindow
	MaxFailureWindow = failurelimit.MaxWindow
)

// ParseFailureLimit reads a failure limit written COUNT/WINDOW, like
// 20/1m or 100/1h (the window in Go's duration syntax, or days like 1d).
func ParseFailureLimit(s string) (FailureLimit, error) { return failurelimit.Parse(s) }
