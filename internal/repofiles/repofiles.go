package repofiles

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// YAML lists the repository's YAML files, relative to the repository
// root, which is root (a path from the test's directory). It walks the
// files themselves rather than asking git, so that the tests pass from a
// source tarball too: directories whose names start with a dot (.git,
// .ci's scratch) and node_modules are skipped, as are files under
// testdata, which hold test inputs rather than shipped configuration.
func YAML(tb testing.TB, root string) []string {
	tb.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(name); ext == ".yaml" || ext == ".yml" {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("listing the repository's YAML files: %v", err)
	}
	return files
}
