package extauthz

import (
	"net/netip"
	"strings"
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
	for i := f.n - 1; i >= 0; i-- {
		line := f.lines[i]
		for line != "" {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			if skip > 0 {
				skip--
				continue
			}
			a, err := netip.ParseAddr(strings.Trim(entry, " \t"))
			if err != nil {
				return netip.Addr{}, false
			}
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}
