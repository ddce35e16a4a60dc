package keystore

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// MaxAllowedCIDRs bounds the source restrictions of one key.
const MaxAllowedCIDRs = 32

// ParseCIDR reads one source restriction: a CIDR prefix like 10.0.0.0/8
// or 2001:db8::/32, or a single address (a /32 or /128). An IPv4-mapped
// IPv6 prefix (::ffff:10.0.0.0/104) means its IPv4 prefix, since source
// addresses are compared unmapped. A prefix with bits set beyond its
// length (10.1.2.3/8) is refused rather than widened silently, and so is
// an address with a zone.
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%s is not a CIDR prefix like 10.0.0.0/8 or 2001:db8::/32, or an address", echo(s))
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s is not a CIDR prefix like 10.0.0.0/8 or 2001:db8::/32, or an address", echo(s))
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%s: an IPv4-mapped prefix needs at least 96 bits", echo(s))
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%s has address bits set beyond /%d: did you mean %s?", echo(s), p.Bits(), p.Masked())
	}
	return p, nil
}

// NormalizeCIDRs parses source restrictions (ParseCIDR) and returns them
// sorted without duplicates (nil for none), or a *ValidationError for
// field "allowed_cidrs" naming the first bad entry.
func NormalizeCIDRs(list []string) ([]netip.Prefix, error) {
	if len(list) > MaxAllowedCIDRs {
		return nil, invalidf("allowed_cidrs", "at most %d prefixes, got %d", MaxAllowedCIDRs, len(list))
	}
	var out []netip.Prefix
	for _, s := range list {
		p, err := ParseCIDR(s)
		if err != nil {
			return nil, invalid("allowed_cidrs", err.Error())
		}
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefixes)
	return slices.Compact(out), nil
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// cidrStrings spells prefixes for audit details.
func cidrStrings(cidrs []netip.Prefix) []string {
	out := make([]string, len(cidrs))
	for i, p := range cidrs {
		out[i] = p.String()
	}
	return out
}
