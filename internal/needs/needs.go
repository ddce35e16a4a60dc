package needs

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// InCI reports whether the tests run in CI (the CI variable is true, as
// every CI system sets it): a missing program then fails a test.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Missing ends the test for want of what: skipped outside CI, failed in
// CI. install says how to get it.
func Missing(tb testing.TB, what, install string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s is missing (CI must install it: %s)", what, install)
	}
	tb.Skipf("skipped: needs %s (%s)", what, install)
}

// Program returns the path of the program name, found on PATH or at one
// of the other paths, or ends the test (Missing).
func Program(tb testing.TB, name, install string, paths ...string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(tb, name, install)
	return ""
}
