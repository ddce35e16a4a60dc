package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

type versionCmd struct{}

// commit is set at build time with -ldflags "-X main.commit=…" where the
// build has no VCS information (a Docker build without .git, say).
var commit = ""

func (versionCmd) Run(e *env) error {
	revision, modified := buildRevision()
	suffix := ""
	if modified {
		suffix = " (modified)"
	}
	fmt.Fprintf(e.stdout, "keygate %s\ncommit %s%s\n%s %s/%s\n", version, revision, suffix, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// buildRevision is the commit the binary was built from ("unknown" when
// neither the linker flag nor Go's VCS stamp says), and whether the tree
// had changes.
func buildRevision() (revision string, modified bool) {
	revision = "unknown"
	if commit != "" {
		revision = commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if commit == "" {
					revision = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	return revision, modified
}
