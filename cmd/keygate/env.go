package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// env is what commands need from their surroundings; run builds it once,
// so that tests can run commands with their own.
type env struct {
	ctx    context.Context
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// terminal reports whether stdin is a terminal someone answers at.
	terminal bool
}

// interactive reports whether a command may ask its user a question.
func (e *env) interactive() bool { return e.terminal && e.stdin != nil }

// exitError carries an exit status; err nil means the message was printed
// already (kong's help and usage errors).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is bad input from the user: exit status 2, nothing done.
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// oneLine keeps a message or a table row on one line whatever the text
// it quotes holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
