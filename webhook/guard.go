package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Guard decides where deliveries may go. The zero value refuses what is
// always refused (unspecified, multicast and broadcast addresses) and
// link-local and metadata addresses.
type Guard struct {
	// AllowLinkLocal allows link-local addresses (169.254.0.0/16,
	// fe80::/10) and the cloud metadata addresses among and beside them.
	AllowLinkLocal bool
	// Forbidden are listeners deliveries must never reach (the admin
	// listener): an address equal to one, or, for one bound to an
	// unspecified address, any loopback or local address on its port.
	Forbidden []netip.AddrPort
	// Resolver resolves host names at registration. Default:
	// net.DefaultResolver.
	Resolver *net.Resolver
}

// metadataAddrs are cloud metadata services outside the link-local
// ranges (AWS's IPv6 one, Alibaba Cloud's), refused like them.
var metadataAddrs = []netip.Addr{netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("100.100.100.200")}

// ErrForbidden marks a destination the guard refuses.
var ErrForbidden = errors.New("webhook: forbidden destination")

// CheckAddr reports why a delivery may not connect to ap, or nil.
func (g *Guard) CheckAddr(ap netip.AddrPort) error {
	a := ap.Addr().Unmap()
	switch {
	case !a.IsValid():
		return fmt.Errorf("%w: not an IP address", ErrForbidden)
	case a.IsUnspecified():
		return fmt.Errorf("%w: %s is the unspecified address", ErrForbidden, a)
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: %s is a multicast or broadcast address", ErrForbidden, a)
	}
	for _, f := range g.Forbidden {
		fa := f.Addr().Unmap()
		if f.Port() == ap.Port() && (fa == a || fa.IsUnspecified() && (a.IsLoopback() || isLocal(a))) {
			return fmt.Errorf("%w: %s is keygate's own admin listener", ErrForbidden, netip.AddrPortFrom(a, ap.Port()))
		}
	}
	if !g.AllowLinkLocal {
		if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() {
			return fmt.Errorf("%w: %s is a link-local address (cloud metadata services live there); --webhook-allow-link-local allows it",
				ErrForbidden, a)
		}
		for _, m := range metadataAddrs {
			if a == m {
				return fmt.Errorf("%w: %s is a cloud metadata address; --webhook-allow-link-local allows it", ErrForbidden, a)
			}
		}
	}
	return nil
}

// isLocal reports whether a is an address of one of this machine's
// interfaces.
func isLocal(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == a {
			return true
		}
	}
	return false
}

// control is the dialer's Control function: it sees the address actually
// dialed, after name resolution, so that a name that resolves elsewhere
// later (DNS rebinding) is refused too.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbidden, address)
	}
	return g.CheckAddr(ap)
}

// CheckURL checks a webhook URL at registration: what it says by itself
// (keystore.ValidateEndpointURL), then every address its host resolves to
// now. The check is made again whenever a delivery dials.
func (g *Guard) CheckURL(ctx context.Context, raw string) error {
	u, err := keystore.ValidateEndpointURL(raw)
	if err != nil {
		return err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return &keystore.ValidationError{Field: "url", Problem: "has a port that is not a number from 0 to 65535"}
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		r := g.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil || len(addrs) == 0 {
			return &keystore.ValidationError{Field: "url", Problem: "has a host name that does not resolve here: check it"}
		}
	}
	for _, a := range addrs {
		if err := g.CheckAddr(netip.AddrPortFrom(a, uint16(p))); err != nil {
			return &keystore.ValidationError{Field: "url", Problem: "leads to a forbidden destination: " + trimSentinel(err)}
		}
	}
	return nil
}

// trimSentinel is err's message without ErrForbidden's prefix.
func trimSentinel(err error) string {
	s := err.Error()
	prefix := ErrForbidden.Error() + ": "
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}
