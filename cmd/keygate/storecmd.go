package main

import (
	"errors"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// storeCmd holds the commands that act on a store as a whole.
type storeCmd struct {
	Copy storeCopyCmd `cmd:"" help:"Copy every key and its audit trail from one database to another, empty one, all or nothing: how to move from SQLite to PostgreSQL."`
}

type storeCopyCmd struct {
	logFlags
	From string `required:"" placeholder:"URL" help:"The database to copy from, like sqlite:keygate.db (read only)."`
	To   string `required:"" placeholder:"URL" help:"The database to copy into, like postgres://keygate@db/keygate: migrated first, and it must hold no keys."`
}

// Run copies, after naming both databases.
func (c *storeCopyCmd) Run(e *env) error {
	logger, err := c.logger(e.stderr)
	if err != nil {
		return err
	}
	from, err := dbFlags{DatabaseURL: c.From}.database(e.getenv)
	if err != nil {
		return usageError("--from: %v", errors.Unwrap(err))
	}
	to, err := dbFlags{DatabaseURL: c.To}.database(e.getenv)
	if err != nil {
		return usageError("--to: %v", errors.Unwrap(err))
	}
	if from.same(to) {
		return usageError("--from and --to name the same database")
	}
	src, err := from.open(e.ctx, forChanges, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := to.open(e.ctx, forMigration, nil)
	if err != nil {
		return err
	}
	defer dst.Close()
	fmt.Fprintf(e.stderr, "copying from the %s into the %s\n", src.Where(), dst.Where())
	if _, err := to.migrate(e.ctx, dst, logger); err != nil {
		return err
	}
	copied, err := keystore.Copy(e.ctx, src, dst)
	var ve *keystore.ValidationError
	switch {
	case errors.As(err, &ve):
		return usageError("--to: %s; nothing was copied", ve.Problem)
	case keystore.IsNoSchema(err):
		return from.schemaError()
	case err != nil:
		return fmt.Errorf("%s; nothing was copied", oneLineError(errors.Unwrap(err)))
	}
	fmt.Fprintf(e.stdout, "Copied %d keys and %d audit events. Serve from the new database with the same --pepper-file and --key-prefix, "+
		"then retire the old one.\n", copied.Keys, copied.Events)
	return nil
}
