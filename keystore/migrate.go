package keystore

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// MigrationResult describes one applied schema migration.
type MigrationResult struct {
	Version int64
	Name    string
}

// CheckSchemaVersion refuses a database whose schema version (the highest
// migration it has applied) is beyond the last of migrations, files named
// "<version>_<name>.sql": a newer keygate migrated it, and this one would
// misread it (ErrSchemaTooNew).
func CheckSchemaVersion(version int64, migrations fs.FS) error {
	entries, err := fs.ReadDir(migrations, ".")
	if err != nil {
		return err
	}
	var latest int64
	for _, e := range entries {
		prefix, _, _ := strings.Cut(e.Name(), "_")
		if v, err := strconv.ParseInt(prefix, 10, 64); err == nil && v > latest {
			latest = v
		}
	}
	if version > latest {
		return fmt.Errorf("%w: its schema is version %d, this keygate knows up to %d; upgrade keygate", ErrSchemaTooNew, version, latest)
	}
	return nil
}
