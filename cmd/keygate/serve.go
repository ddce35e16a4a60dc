package main

import "errors"

type serveCmd struct{}

func (serveCmd) Run(e *env) error { return errors.New("not yet") }
