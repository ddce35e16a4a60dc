package keystore

import (
	"encoding/binary"
	"time"
)

// hasLimits, set in the first byte of a record's extras (the number of
// prefixes, at most MaxAllowedCIDRs, fits below it), says that the key's
// limits follow that byte.
const hasLimits = 0x80

// appendLimits encodes limits that are not zero: one byte with the number
// of rates (low nibble) and the quota period (high nibble), each rate as
// the uvarints count, window in seconds and burst, then the quota's count
// as a uvarint when it has one.
func appendLimits(b []byte, l Limits) []byte {
	b = append(b, byte(len(l.Rates))|byte(l.Quota.Period)<<4)
	for _, r := range l.Rates {
		b = binary.AppendUvarint(b, uint64(r.Count))
		b = binary.AppendUvarint(b, uint64(r.Per/time.Second))
		b = binary.AppendUvarint(b, uint64(r.Burst))
	}
	if l.Quota.Period != NoQuota {
		b = binary.AppendUvarint(b, uint64(l.Quota.Count))
	}
	return b
}

// limitsLen is the length of the limits appendLimits encoded at the start
// of x.
func limitsLen(x string) int {
	n, quota := int(x[0]&0x0f), x[0]>>4 != 0
	i := 1
	values := 3 * n
	if quota {
		values++
	}
	for range values {
		for x[i]&0x80 != 0 {
			i++
		}
		i++
	}
	return i
}

// Limited reports whether the key has limits (rates or a quota). A key
// without any pays for this check only.
func (r *Record) Limited() bool {
	x := r.extras()
	return x != "" && x[0]&hasLimits != 0
}

// limits returns the encoded limits, "" when the key has none.
func (r *Record) limits() string {
	x := r.extras()
	if x == "" || x[0]&hasLimits == 0 {
		return ""
	}
	return x[1 : 1+limitsLen(x[1:])]
}

// AppendRates appends the key's rates, sorted by window, to dst: with a
// [MaxRates]Rate array on the stack, reading them allocates nothing.
func (r *Record) AppendRates(dst []Rate) []Rate {
	x := r.limits()
	if x == "" {
		return dst
	}
	n := int(x[0] & 0x0f)
	x = x[1:]
	for range n {
		var v [3]uint64
		for j := range v {
			var size int
			v[j], size = uvarint(x)
			x = x[size:]
		}
		dst = append(dst, Rate{Count: int64(v[0]), Per: time.Duration(v[1]) * time.Second, Burst: int64(v[2])})
	}
	return dst
}

// Quota is the key's quota (Period NoQuota when it has none).
func (r *Record) Quota() Quota {
	x := r.limits()
	if x == "" || x[0]>>4 == 0 {
		return Quota{}
	}
	n := int(x[0] & 0x0f)
	x = x[1:]
	for range 3 * n {
		_, size := uvarint(x)
		x = x[size:]
	}
	count, _ := uvarint(x)
	return Quota{Count: int64(count), Period: QuotaPeriod(r.limits()[0] >> 4)}
}

// Limits returns the key's limits (allocating their rates).
func (r *Record) Limits() Limits {
	var buf [MaxRates]Rate
	rates := r.AppendRates(buf[:0])
	l := Limits{Quota: r.Quota()}
	if len(rates) > 0 {
		l.Rates = append([]Rate(nil), rates...)
	}
	return l
}

// uvarint reads a uvarint from a string without copying it.
func uvarint(x string) (uint64, int) {
	var v uint64
	var shift uint
	for i := 0; i < len(x); i++ {
		c := x[i]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i + 1
		}
		shift += 7
	}
	return v, len(x)
}
