package keystore

import "io/fs"

// CountMigrationFiles counts the embedded migration files for tests.
func CountMigrationFiles() (int, error) {
	entries, err := fs.ReadDir(MigrationsFS(), ".")
	return len(entries), err
}
