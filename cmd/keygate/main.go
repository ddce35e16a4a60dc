package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := runInteractive(ctx, os.Args[1:], os.Getenv, os.Stdin, term.IsTerminal(int(os.Stdin.Fd())), os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCodeTo(err, os.Stderr))
}

// exitCodeTo prints err, if any, as one line and maps it to the exit
// status: 2 for bad usage or input, 1 for any other failure.
func exitCodeTo(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ex *exitError
	if errors.As(err, &ex) && ex.err == nil {
		return ex.code
	}
	fmt.Fprintln(stderr, "keygate:", err)
	if errors.As(err, &ex) {
		return ex.code
	}
	return 1
}
