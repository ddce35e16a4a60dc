package repofiles

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// YAML lists the repository's YAML files as git sees them: tracked, or new
// and not ignored (so a file not yet added is checked too), relative to the
// repository root, which is root (a path from the test's directory).
func YAML(tb testing.TB, root string) []string {
	tb.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.yaml", "*.yml").Output()
	if err != nil {
		tb.Fatalf("git ls-files (the test lists the shipped files with git): %v", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" || slices.Contains(files, f) {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, f)); errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree, not shipped
		}
		files = append(files, f)
	}
	return files
}
