package main

import "errors"

type devCmd struct{}

func (devCmd) Run(e *env) error { return errors.New("not yet") }
