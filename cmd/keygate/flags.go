package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kong"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/sqlite"
)

// duration is a flag value in Go syntax extended with days ("30d").
type duration time.Duration

// Decode implements kong.MapperValue.
func (d *duration) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("duration", &s); err != nil {
		return err
	}
	v, err := keystore.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// keyFlags shape new keys; serve and the key commands share them so that
// every replica and the CLI agree.
type keyFlags struct {
	KeyPrefix      string   `group:"store" default:"${key_prefix}" help:"Prefix of new keys (lower-case letters, digits, '_'). Keys with other prefixes keep working."`
	PepperFile     string   `group:"store" type:"existingfile" placeholder:"FILE" help:"File holding a server-side secret of at least 32 bytes: keys are then hashed with HMAC-SHA-256 instead of SHA-256. Every replica and the CLI need the same one."`
	Pepper         string   `group:"store" hidden:"" help:"The pepper itself; prefer --pepper-file."`
	MaxKeyLifetime duration `group:"store" placeholder:"DURATION" help:"Longest lifetime a key may be given, at creation, rotation or a change of expiry, like 365d; 0 means no limit."`
}

func (f keyFlags) hasher() (*keystore.Hasher, error) {
	const source = "pepper (--pepper-file or KEYGATE_PEPPER)"
	pepper := f.Pepper
	if f.PepperFile != "" {
		if f.Pepper != "" {
			return nil, usageError("--pepper-file and KEYGATE_PEPPER can't be used together")
		}
		b, err := os.ReadFile(f.PepperFile)
		if err != nil {
			return nil, usageError("--pepper-file: %v", err)
		}
		if pepper = string(b); strings.TrimSpace(pepper) == "" {
			return nil, usageError("--pepper-file: %s is empty", f.PepperFile)
		}
	}
	// A trailing newline is the file's, not the secret's: trimmed the same
	// way from either source, so that a server and a CLI configured
	// differently hash alike.
	h, err := keystore.NewHasher([]byte(strings.TrimRight(pepper, "\r\n")))
	if err != nil {
		return nil, usageError("%s: %v", source, strings.TrimPrefix(err.Error(), "keystore: "))
	}
	return h, nil
}

// options checks the key flags, before any I/O, into the store's options.
func (f keyFlags) options() (keystore.Options, error) {
	if err := keystore.ValidatePrefix(f.KeyPrefix); err != nil {
		return keystore.Options{}, usageError("--key-prefix: %v", err)
	}
	if f.KeyPrefix == admin.TokenPrefix {
		return keystore.Options{}, usageError("--key-prefix: %q is the prefix of admin tokens; choose another", f.KeyPrefix)
	}
	if f.MaxKeyLifetime < 0 {
		return keystore.Options{}, usageError("--max-key-lifetime: must not be negative")
	}
	h, err := f.hasher()
	if err != nil {
		return keystore.Options{}, err
	}
	return keystore.Options{Hasher: h, Prefix: f.KeyPrefix, MaxLifetime: time.Duration(f.MaxKeyLifetime)}, nil
}

// store is a store on b shaped by the key flags; beforeWrite, when set,
// is keystore.Options.BeforeWrite.
func (f keyFlags) store(b keystore.Backend, beforeWrite func()) (*keystore.Store, error) {
	opts, err := f.options()
	if err != nil {
		return nil, err
	}
	opts.BeforeWrite = beforeWrite
	return keystore.New(b, opts)
}

// openStore opens the database (see database.open) and returns a store,
// shaped by kf when the command creates keys (nil: the defaults, enough
// to read and revoke), and the function that closes it. Before it writes,
// once the request is checked, the store says on stderr which database it
// writes to.
func (f *dbFlags) openStore(e *env, kf *keyFlags) (*keystore.Store, func(), error) {
	db, err := f.database(e.getenv)
	if err != nil {
		return nil, nil, err
	}
	f.opened = db
	b, err := db.open(e.ctx, forChanges, nil)
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	beforeWrite := func() {
		once.Do(func() { fmt.Fprintf(e.stderr, "database: %s\n", b.Where()) })
	}
	var store *keystore.Store
	if kf != nil {
		store, err = kf.store(b, beforeWrite)
	} else {
		store, err = keystore.New(b, keystore.Options{BeforeWrite: beforeWrite})
	}
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return store, b.Close, nil
}

// openKey opens the store (openStore, with the default key format) and
// reads the key with the given id, saying what is wrong in the command's
// words; closeStore is nil when it fails.
func (f *dbFlags) openKey(e *env, id string) (store *keystore.Store, k *keystore.Key, closeStore func(), err error) {
	store, closeStore, err = f.openStore(e, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if k, err = store.Get(e.ctx, id); err != nil {
		closeStore()
		return nil, nil, nil, f.storeError(err, id)
	}
	return store, k, closeStore, nil
}

// flagOfField names the flag behind a keystore validation error's field.
var flagOfField = map[string]string{
	"account_id":    "--account",
	"name":          "--name",
	"description":   "--description",
	"scopes":        "--scope",
	"remove_scopes": "--remove-scope",
	"expiry":        "expiry (--expires-in, --expires-at, --no-expiry)",
	"grace":         "--grace",
	"id":            "ID",
	"update":        "keys update",
	"limit":         "--limit",
	"cursor":        "--cursor",
	"allowed_cidrs": "--allow-cidr",
	"metadata":      "--meta",
	"limits":        "--limit",
	"quota":         "--quota",
	"from":          "--from",
	"to":            "--to",
	"step":          "--step",
	"url":           "--url",
	"event_types":   "--event",
	"overlap":       "--overlap",
}

// flagError is err, when it is a keystore validation error, as a usage
// error naming the flag behind its field (exit 2); nil otherwise.
func flagError(err error) error {
	var ve *keystore.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	return usageError("%s: %s", cmp.Or(flagOfField[ve.Field], ve.Field), ve.Problem)
}

// oneLineError flattens pgx's multi-line connection errors.
func oneLineError(err error) string { return oneLine(err.Error()) }

// storeError maps an error from the store to what the user sees: bad input
// is a usage error naming the flag (exit 2); the rest exit 1.
// A missing schema's message names the database f reaches.
func (f dbFlags) storeError(err error, id string) error {
	var fileErr *sqlite.FileError
	switch fe := flagError(err); {
	case fe != nil:
		return fe
	case errors.Is(err, keystore.ErrNotFound):
		return fmt.Errorf("no key with id %s", id)
	case keystore.IsNoSchema(err):
		return f.opened.schemaError()
	case errors.As(err, &fileErr):
		return &exitError{code: 2, err: fileErr}
	}
	return errors.New(strings.ReplaceAll(oneLineError(err), "keystore: ", ""))
}
