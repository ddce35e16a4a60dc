package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/keystore"
)

type migrateCmd struct {
	dbFlags
	logFlags
}

func (c *migrateCmd) Run(e *env) error {
	logger, err := c.logger(e.stderr)
	if err != nil {
		return err
	}
	cfg, err := c.connConfig()
	if err != nil {
		return err
	}
	applied, err := migrateSchema(e.ctx, cfg, logger)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(e.stdout, "The schema is up to date.")
		return nil
	}
	for _, m := range applied {
		fmt.Fprintf(e.stdout, "Applied %s\n", m.Name)
	}
	return nil
}

// migrateSchema applies the migrations to cfg's database. Its error says
// why in one line: the connection (see connError), or the migration.
func migrateSchema(ctx context.Context, cfg *pgx.ConnConfig, logger *slog.Logger) ([]keystore.MigrationResult, error) {
	applied, err := keystore.Migrate(ctx, cfg, logger)
	if err == nil {
		return applied, nil
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return nil, connError(&cfg.Config, err)
	}
	return nil, fmt.Errorf("migrating %s: %s", where(&cfg.Config), strings.ReplaceAll(oneLineError(err), "keystore: ", ""))
}
