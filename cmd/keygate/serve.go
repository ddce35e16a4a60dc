package main

import (
	"time"
)

type serveCmd struct {
	dbFlags
	replicaFlags
	keyFlags
	logFlags
	serveFlags
	DrainDelay duration `group:"listeners" default:"${drain_delay}" placeholder:"DURATION" help:"On SIGTERM, how long health and /readyz report not serving while requests are still answered, so that load balancers stop sending first; a second signal ends it early."`
}

// Run serves until e.ctx ends: check the configuration, build the
// server, run it, close it.
func (c *serveCmd) Run(e *env) error {
	s, err := c.server(e)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Run(e.ctx)
}

// server checks the flags into a serveConfig and builds the server from
// it; tests call it to start serve and read the listeners' addresses.
func (c *serveCmd) server(e *env) (*server, error) {
	if c.DrainDelay < 0 {
		return nil, usageError("--drain-delay: must not be negative")
	}
	logger, err := c.logger(e.stderr)
	if err != nil {
		return nil, err
	}
	cfg, err := c.config(c.dbFlags, c.keyFlags, e.getenv, logger)
	if err != nil {
		return nil, err
	}
	if cfg.store.db, err = c.replicaFlags.apply(cfg.store.db); err != nil {
		return nil, err
	}
	cfg.drain = time.Duration(c.DrainDelay)
	return build(e, logger, cfg)
}
