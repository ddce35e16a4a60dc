package forwardauth

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/keygate/keygate/authz"
)

// ParseTrustedProxies reads a list of CIDR prefixes ("10.0.0.0/8") or
// single addresses ("127.0.0.1", a /32 or /128), for Options.TrustedProxies.
// Empty entries are skipped; the error names the first bad entry.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR prefix like 10.0.0.0/8 or an address", s)
			}
			if p.Addr().Is4In6() {
				// ::ffff:10.0.0.0/104 means 10.0.0.0/8; peers are unmapped.
				if p.Bits() < 96 {
					return nil, fmt.Errorf("%q: an IPv4-mapped prefix needs at least 96 bits", s)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR prefix like 10.0.0.0/8 or an address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// source is the client's address: the TCP peer, or what a trusted peer
// says in X-Forwarded-For (the rightmost address no trusted proxy holds)
// or, lacking that header, X-Real-IP.
func (h *Handler) source(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	peer := ap.Addr().Unmap()
	if !h.isTrusted(peer) {
		return peer
	}
	if xff := r.Header["X-Forwarded-For"]; len(xff) > 0 {
		// Right to left: each trusted proxy appended the address it saw.
		client := peer // when every hop is a trusted proxy
		authz.ForwardedEntries(xff, func(entry string) bool {
			if entry == "" {
				return true
			}
			a, ok := parseHop(entry)
			switch {
			case !ok:
				return false // nothing vouches for what is left of it
			case !h.isTrusted(a):
				client = a
				return false
			}
			return true
		})
		return client
	}
	if xr := r.Header["X-Real-Ip"]; len(xr) == 1 {
		if a, ok := parseHop(strings.Trim(xr[0], " \t")); ok {
			return a
		}
	}
	return peer
}

// parseHop reads one forwarded address: an IP, or an IP with a port.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func (h *Handler) isTrusted(a netip.Addr) bool {
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
