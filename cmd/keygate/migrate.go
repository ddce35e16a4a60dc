package main

import (
	"fmt"

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
	applied, err := keystore.Migrate(e.ctx, cfg, logger)
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
