package main

import (
	"errors"
	"io"
	"log/slog"
)

// logFlags choose the log format and level.
type logFlags struct {
	LogFormat string `group:"logging" enum:"json,text" default:"json" help:"Log format: json or text."`
	LogLevel  string `group:"logging" default:"info" enum:"debug,info,warn,error" help:"Least severe level logged: debug, info, warn or error."`
}

func (f logFlags) logger(w io.Writer) (*slog.Logger, error) {
	return newLogger(w, f.LogFormat, f.LogLevel)
}

// newLogger returns the structured logger commands write to stderr.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level: want debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, errors.New("unreachable: kong validates --log-format")
}
