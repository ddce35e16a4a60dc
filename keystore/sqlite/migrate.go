package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/pressly/goose/v3"

	"github.com/keygate/keygate/keystore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

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

func (b *Backend) provider(opts ...goose.ProviderOption) (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectSQLite3, b.writer, MigrationsFS(),
		append([]goose.ProviderOption{goose.WithDisableGlobalRegistry(true), goose.WithTableName(migrationsTable)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("keystore: migrations: %w", err)
	}
	return p, nil
}

// Migrate applies the migrations the database lacks, each in its own
// transaction. Two processes migrating one file at once are safe: SQLite
// runs one transaction at a time, and a migration that another process
// applied first fails and rolls back whole, after which the database is
// checked again.
func (b *Backend) Migrate(ctx context.Context, logger *slog.Logger) ([]keystore.MigrationResult, error) {
	if err := b.checkNotNewer(ctx); err != nil {
		return nil, err
	}
	p, err := b.provider(goose.WithSlog(orDiscard(logger)))
	if err != nil {
		return nil, err
	}
	var out []keystore.MigrationResult
	for attempt := 0; ; attempt++ {
		results, err := p.Up(ctx)
		for _, r := range results {
			if r.Error == nil {
				out = append(out, keystore.MigrationResult{Version: r.Source.Version, Name: r.Source.Path})
			}
		}
		if err == nil {
			return out, nil
		}
		if pending, perr := p.HasPending(ctx); perr == nil && !pending {
			return out, nil // another process applied them
		}
		if attempt == 2 {
			return nil, fmt.Errorf("keystore: migrate: %w", err)
		}
	}
}

// checkNotNewer refuses a database that a newer keygate migrated.
func (b *Backend) checkNotNewer(ctx context.Context) error {
	var tables int
	err := b.reader.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, migrationsTable).Scan(&tables)
	var version int64
	if err == nil && tables > 0 {
		err = b.reader.QueryRowContext(ctx, `SELECT coalesce(max(version_id), 0) FROM `+migrationsTable).Scan(&version)
	}
	if err != nil {
		return b.fileError(err)
	}
	if err := keystore.CheckSchemaVersion(version, MigrationsFS()); err != nil {
		return &FileError{Path: b.path, Err: keystore.ErrSchemaTooNew,
			Problem: "was migrated by a newer keygate: " + strings.TrimPrefix(err.Error(), keystore.ErrSchemaTooNew.Error()+": ")}
	}
	return nil
}

// PendingMigrations reports whether the database lacks migrations this
// build knows.
func (b *Backend) PendingMigrations(ctx context.Context) (bool, error) {
	if err := b.checkNotNewer(ctx); err != nil {
		return false, err
	}
	p, err := b.provider()
	if err != nil {
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
