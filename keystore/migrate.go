package keystore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockID is the advisory lock that serialises concurrent
// migrations (replicas starting together). It spells "keygate" in ASCII.
const migrationLockID = 0x6b657967617465

// migrationsTable records which migrations a database has.
const migrationsTable = "keygate_schema_migrations"

// MigrationsFS returns the embedded schema migrations.
func MigrationsFS() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory is a compile-time constant
	}
	return sub
}

// MigrationResult describes one applied migration.
type MigrationResult struct {
	Version int64
	Name    string
}

// Migrate applies the embedded migrations that the database at connConfig
// has not seen yet, each in its own transaction, under a session advisory
// lock so that replicas migrating at once take turns. Running it again is
// a no-op. It returns the migrations it applied.
func Migrate(ctx context.Context, connConfig *pgx.ConnConfig, logger *slog.Logger) ([]MigrationResult, error) {
	db := stdlib.OpenDB(*connConfig)
	defer db.Close()
	return migrateDB(ctx, db, logger)
}

func migrateDB(ctx context.Context, db *sql.DB, logger *slog.Logger) ([]MigrationResult, error) {
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(migrationLockID),
		lock.WithLockTimeout(1, 300), // retry every second for up to five minutes
	)
	if err != nil {
		return nil, fmt.Errorf("keystore: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, MigrationsFS(),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithTableName(migrationsTable),
		goose.WithSlog(logger),
	)
	if err != nil {
		return nil, fmt.Errorf("keystore: migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("keystore: migrate: %w", err)
	}
	out := make([]MigrationResult, 0, len(results))
	for _, r := range results {
		out = append(out, MigrationResult{Version: r.Source.Version, Name: r.Source.Path})
	}
	return out, nil
}

// PendingMigrations reports whether the database lacks migrations this
// build knows, so that serve can refuse to run against an old schema.
func PendingMigrations(ctx context.Context, connConfig *pgx.ConnConfig) (bool, error) {
	db := stdlib.OpenDB(*connConfig)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, MigrationsFS(),
		goose.WithDisableGlobalRegistry(true), goose.WithTableName(migrationsTable))
	if err != nil {
		return false, fmt.Errorf("keystore: migrations: %w", err)
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("keystore: migrations: %w", err)
	}
	return pending, nil
}
