package main

import (
	"fmt"
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
	db, err := c.database(e.getenv)
	if err != nil {
		return err
	}
	b, err := db.open(e.ctx, forMigration, nil)
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(e.stderr, "database: %s\n", b.Where())
	applied, err := db.migrate(e.ctx, b, logger)
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
