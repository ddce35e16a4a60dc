package main

import (
	"fmt"
	"strings"

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
	}
	for _, m := range applied {
		fmt.Fprintf(e.stdout, "Applied %s\n", m.Name)
	}
	return reportAccounts(e, b)
}

// reportAccounts warns of keys stored under account ids that break the
// rule (written before it): they keep working, and nothing rewrites them
// (the host system knows its accounts by those ids), but an id with
// spaces at its ends or a comma reaches the upstream changed.
func reportAccounts(e *env, b keystore.Backend) error {
	s, err := keystore.New(b, keystore.Options{})
	if err != nil {
		return err
	}
	bad, err := s.NonCanonicalAccounts(e.ctx)
	if err != nil {
		return fmt.Errorf("checking account ids: %s", oneLineError(err))
	}
	for _, a := range bad {
		fmt.Fprintf(e.stderr, "warning: account %q (%d keys) breaks the account id rule (%s): its keys still work, "+
			"but reach the upstream with that id as it is; issue them new keys under a valid id and revoke these\n",
			a.AccountID, a.Keys, strings.TrimPrefix(keystore.ValidateAccountID(a.AccountID).Error(), "account_id: "))
	}
	return nil
}
