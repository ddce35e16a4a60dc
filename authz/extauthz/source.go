package extauthz

import (
	"net/netip"

	"github.com/keygate/keygate/authz"
)

// maxXFFLines bounds the X-Forwarded-For header lines read (Envoy merges
// them into one in the headers map; header_map keeps them apart).
const maxXFFLines = 8

// forwardedFor collects a request's X-Forwarded-For lines without
// allocating.
type forwardedFor struct {
	lines [maxXFFLines]string
	n     int
	over  bool // more lines than maxXFFLines
}

func (f *forwardedFor) add(line string) {
	if f.n == len(f.lines) {
		f.over = true
		return
	}
	f.lines[f.n] = line
	f.n++
}

// client is the address hops+1 entries from the right of X-Forwarded-For:
// what Envoy takes as the trusted client address with xff_num_trusted_hops
// set to hops, whether it appended its own peer to the header
// (use_remote_address) or not. ok is false when the header has fewer
// entries, or that entry is not an address: Envoy then falls back to its
// peer, the request's source.address.
func (f *forwardedFor) client(hops int) (a netip.Addr, ok bool) {
	if f.over {
		return netip.Addr{}, false
	}
	skip := hops
	authz.ForwardedEntries(f.lines[:f.n], func(entry string) bool {
		if skip > 0 {
			skip--
			return true
		}
		if p, err := netip.ParseAddr(entry); err == nil {
			a, ok = p.Unmap(), true
		}
		return false
	})
	return a, ok
}
