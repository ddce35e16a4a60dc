package postgres

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

	"github.com/keygate/keygate/keystore"
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

// Migrate applies the migrations the database lacks, over a connection of
// its own (Options.Direct: the advisory lock needs a session).
func (b *Backend) Migrate(ctx context.Context, logger *slog.Logger) ([]keystore.MigrationResult, error) {
	return Migrate(ctx, b.direct, logger)
}

// Migrate applies the embedded migrations that the database at connConfig
// has not seen yet, each in its own transaction, under a session advisory
// lock so that replicas migrating at once take turns. Running it again is
// a no-op. It returns the migrations it applied.
func Migrate(ctx context.Context, connConfig *pgx.ConnConfig, logger *slog.Logger) ([]keystore.MigrationResult, error) {
	db := stdlib.OpenDB(*connConfig)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(migrationLockID),
		lock.WithLockTimeout(1, 300), // retry every second for up to five minutes
	)
	if err != nil {
		return nil, fmt.Errorf("keystore: migrate: %w", err)
	}
	p, err := provider(db, goose.WithSessionLocker(locker), goose.WithSlog(orDiscard(logger)))
	if err != nil {
		return nil, err
	}
	if err := checkNotNewer(ctx, db); err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("keystore: migrate: %w", err)
	}
	out := make([]keystore.MigrationResult, 0, len(results))
	for _, r := range results {
		out = append(out, keystore.MigrationResult{Version: r.Source.Version, Name: r.Source.Path})
	}
	return out, nil
}

func provider(db *sql.DB, opts ...goose.ProviderOption) (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectPostgres, db, MigrationsFS(),
		append([]goose.ProviderOption{goose.WithDisableGlobalRegistry(true), goose.WithTableName(migrationsTable)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("keystore: migrations: %w", err)
	}
	return p, nil
}

// checkNotNewer refuses a database that a newer keygate migrated: it has
// applied a migration this build does not know.
func checkNotNewer(ctx context.Context, db *sql.DB) error {
	var exists bool
	err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, migrationsTable).Scan(&exists)
	var version int64
	if err == nil && exists {
		err = db.QueryRowContext(ctx, `SELECT coalesce(max(version_id), 0) FROM `+migrationsTable).Scan(&version)
	}
	if err != nil {
		return fmt.Errorf("keystore: migrations: %w", err)
	}
	return keystore.CheckSchemaVersion(version, MigrationsFS())
}

// PendingMigrations reports whether the database lacks migrations this
// build knows.
func (b *Backend) PendingMigrations(ctx context.Context) (bool, error) {
	db := stdlib.OpenDB(*b.direct)
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return false, err
	}
	if err := checkNotNewer(ctx, db); err != nil {
		return false, err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("keystore: migrations: %w", err)
	}
	return pending, nil
}

// orDiscard is logger, or a logger that discards for nil.
func orDiscard(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}
