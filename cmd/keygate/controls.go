package main

import (
	"errors"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/extauthz"
)

// controlFlags configure the per-key controls and abuse limits of serve
// (and dev): the failed-attempt limit per source, where a request's source
// address comes from in gRPC mode, and which metadata entries go upstream
// as headers.
type controlFlags struct {
	FailureLimit     string   `group:"limits" placeholder:"COUNT/WINDOW" help:"Refuse a source that made COUNT failed attempts (invalid keys) within WINDOW, like 20/1m, with 429 too_many_failures and without any database query, unless its key is cached and valid; IPv6 sources count per /64. Off by default: behind a proxy that does not tell keygate the client's address, every client is one source (see --xff-trusted-hops, --trusted-proxies)."`
	AcceptLegacyKeys bool     `group:"store" help:"Also accept keys without keygate's prefix and checksum (imported with 'keys import --accept-legacy-keys'): 16 to 256 characters of A-Z, a-z, 0-9 and -._~+/=, looked up like any key (unknown ones cost a query, then the negative cache answers, and count against --failure-limit)."`
	MetaHeader       []string `group:"policy" name:"meta-header" placeholder:"KEY" help:"Send the key's metadata entry KEY upstream as x-keygate-meta-KEY ('_' written '-'); repeat for several. Every entry is in Envoy's dynamic metadata (meta.KEY) either way."`
	XFFTrustedHops   *int     `group:"limits" name:"xff-trusted-hops" placeholder:"N" help:"gRPC mode: take the client's address from X-Forwarded-For, as Envoy does with xff_num_trusted_hops: N (set the same number): the entry N+1 from the right, or Envoy's source.address when there are fewer. Default: source.address, Envoy's downstream peer."`
}

// controls are the checked control flags.
type controls struct {
	acceptLegacy bool
	metaHeaders  []string
	failureLimit authz.FailureLimit
	extauthz     extauthz.Options
}

// config checks the flags, before any I/O.
func (f controlFlags) config() (controls, error) {
	var c controls
	var ce *authz.ConfigError
	if err := authz.CheckMetaHeaders(f.MetaHeader); errors.As(err, &ce) {
		return c, usageError("--meta-header: %s", ce.Problem)
	}
	c.metaHeaders, c.acceptLegacy = f.MetaHeader, f.AcceptLegacyKeys
	if f.FailureLimit != "" {
		l, err := authz.ParseFailureLimit(f.FailureLimit)
		if err != nil {
			return c, usageError("--failure-limit: %v", err)
		}
		c.failureLimit = l
	}
	if f.XFFTrustedHops != nil {
		if *f.XFFTrustedHops < 0 {
			return c, usageError("--xff-trusted-hops: must not be negative (0 takes the rightmost X-Forwarded-For entry)")
		}
		c.extauthz.TrustXFF, c.extauthz.XFFTrustedHops = true, *f.XFFTrustedHops
	}
	return c, nil
}

// apply sets what c says in the decision's configuration.
func (c controls) apply(cfg *authz.Config) {
	cfg.MetaHeaders, cfg.AcceptLegacyKeys = c.metaHeaders, c.acceptLegacy
	cfg.FailureLimit = c.failureLimit
}
