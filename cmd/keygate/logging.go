package main

import (
	"io"
	"log/slog"
)

// logFlags choose the log format and level.
type logFlags struct {
	LogFormat string `enum:"json,text" default:"json" help:"Log format: json or text."`
	LogLevel  string `default:"info" enum:"debug,info,warn,error" help:"Least severe level logged: debug, info, warn or error."`
}

func (f logFlags) logger(w io.Writer) (*slog.Logger, error) {
	return newLogger(w, f.LogFormat, f.LogLevel)
}
