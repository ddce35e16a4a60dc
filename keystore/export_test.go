package keystore

import "io/fs"

// CountMigrationFiles counts the embedded migration files for tests.
func CountMigrationFiles() (int, error) {
	entries, err := fs.ReadDir(MigrationsFS(), ".")
	return len(entries), err
}

// SetSecretGenerator replaces how s generates secrets, so that a test can
// know a key's secret before the key exists.
func SetSecretGenerator(s *Store, f func(prefix string) (Secret, error)) { s.generate = f }

// RecordsEqual reports whether two records say the same, for cmp.Comparer.
func RecordsEqual(a, b *Record) bool { return a == b || a != nil && b != nil && *a == *b }
