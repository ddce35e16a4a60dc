package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

// logFlags choose the log format and level.
type logFlags struct {
	LogFormat string `enum:"json,text" default:"json" help:"Log format: json or text."`
	LogLevel  string `default:"info" enum:"debug,info,warn,error" help:"Least severe level logged: debug, info, warn or error."`
}

func (f logFlags) logger(w io.Writer) (*slog.Logger, error) {
	return newLogger(w, f.LogFormat, f.LogLevel)
}

// migrate applies the schema migrations, with a bound on the whole run.
func migrate(e *env, cfg *pgx.ConnConfig, logger *slog.Logger) ([]keystore.MigrationResult, error) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	return keystore.Migrate(ctx, cfg, logger)
}
