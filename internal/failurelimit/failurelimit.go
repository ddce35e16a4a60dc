package failurelimit

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Limit is a budget of failed attempts per source address: a source that
// made Count of them within the last Window is over it. The zero value is
// no limit.
type Limit struct {
	Count  int
	Window time.Duration
}

// Bounds of a Limit.
const (
	MaxCount  = 10_000
	MinWindow = time.Second
	MaxWindow = 24 * time.Hour
)

// Parse reads a limit written COUNT/WINDOW, like 20/1m or 100/1h (the
// window in Go's duration syntax, or days like 1d), and checks it.
func Parse(s string) (Limit, error) {
	count, window, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(count)
	if !ok || err != nil {
		return Limit{}, fmt.Errorf("%q: want COUNT/WINDOW, like 20/1m", s)
	}
	d, err := keystore.ParseDuration(window)
	if err != nil {
		return Limit{}, fmt.Errorf("%q: the window: %v", s, err)
	}
	l := Limit{Count: n, Window: d}
	return l, l.Check()
}

// Check reports a limit out of bounds: a count from 1 to MaxCount, a
// window from MinWindow to MaxWindow.
func (l Limit) Check() error {
	switch {
	case l.Count < 1 || l.Count > MaxCount:
		return fmt.Errorf("the count must be 1 to %d, got %d", MaxCount, l.Count)
	case l.Window < MinWindow || l.Window > MaxWindow:
		return fmt.Errorf("the window must be %s to %s, got %s", MinWindow, keystore.FormatDuration(MaxWindow), l.Window)
	}
	return nil
}

// String writes the limit as Parse reads it.
func (l Limit) String() string {
	return strconv.Itoa(l.Count) + "/" + keystore.FormatDuration(l.Window)
}

// RetryAfter is the Retry-After of a refusal for being over the limit: the
// window in whole seconds, rounded up.
func (l Limit) RetryAfter() string {
	return strconv.FormatInt(int64((l.Window+time.Second-1)/time.Second), 10)
}

// The failure counter's size: failureRows rows of failureCells cells of
// 8 bytes, 2 MiB whatever the number of sources.
const (
	failureRows  = 4
	failureCells = 1 << 16
)

// Counter counts failed attempts per source in a fixed amount of memory: a count-min sketch (every source has a cell in each row, chosen
// by a hash with a random seed, so that a client cannot pick which other
// sources it shares cells with; a source's count is the least of its
// cells, which collisions can only raise), each cell a sliding window over
// two fixed ones. IPv6 sources count per /64, the block a single host or
// subscriber usually holds; IPv4 ones per address; sources the transport
// does not know share one count. It is safe for concurrent use and never
// allocates.
type Counter struct {
	limit  uint32
	window int64 // nanoseconds
	base   time.Time
	seed   maphash.Seed
	// Each cell holds the window number (since base, from 1) in its high
	// 32 bits, the count in that window in the next 16, and the count in
	// the window before in the low 16.
	cells [failureRows][failureCells]atomic.Uint64
}

// NewCounter returns a counter of failures against l (which must pass
// Check), its windows starting at now.
func NewCounter(l Limit, now time.Time) *Counter {
	return &Counter{limit: uint32(l.Count), window: int64(l.Window), base: now, seed: maphash.MakeSeed()}
}

// slots returns the cell of each row for the source a.
func (f *Counter) slots(a netip.Addr) [failureRows]uint16 {
	var b [9]byte
	n := 1
	switch {
	case a.Is4():
		b[0] = 4
		a4 := a.As4()
		n += copy(b[1:], a4[:])
	case a.Is6():
		b[0] = 6
		a16 := a.As16()
		n += copy(b[1:], a16[:8]) // the /64
	}
	h := maphash.Bytes(f.seed, b[:n])
	var s [failureRows]uint16
	for i := range s {
		s[i] = uint16(h >> (16 * i))
	}
	return s
}

// clock is the window number at now, counted from 1, and how far into it
// now is (0 to window-1 nanoseconds).
func (f *Counter) clock(now time.Time) (epoch uint32, into int64) {
	d := max(0, int64(now.Sub(f.base)))
	return uint32(d/f.window) + 1, d % f.window
}

// windows reads a cell at window epoch: this window's count and the last.
func windows(v uint64, epoch uint32) (cur, prev uint64) {
	switch uint32(v >> 32) {
	case epoch:
		return v >> 16 & 0xffff, v & 0xffff
	case epoch - 1:
		return 0, v >> 16 & 0xffff
	}
	return 0, 0
}

// Over reports whether the source a has used up its budget at now: the
// count of this window and the share of the last one the sliding window
// still covers.
func (f *Counter) Over(a netip.Addr, now time.Time) bool {
	epoch, into := f.clock(now)
	s := f.slots(a)
	least := uint64(1<<64 - 1)
	for row := range s {
		cur, prev := windows(f.cells[row][s[row]].Load(), epoch)
		least = min(least, cur+prev*uint64(f.window-into)/uint64(f.window))
	}
	return least >= uint64(f.limit)
}

// Add counts one failed attempt of the source a at now.
func (f *Counter) Add(a netip.Addr, now time.Time) {
	epoch, _ := f.clock(now)
	s := f.slots(a)
	for row := range s {
		cell := &f.cells[row][s[row]]
		for {
			old := cell.Load()
			cur, prev := windows(old, epoch)
			if uint32(old>>32) > epoch {
				break // a later window already: the clock went back
			}
			v := uint64(epoch)<<32 | min(cur+1, 0xffff)<<16 | prev
			if cell.CompareAndSwap(old, v) {
				break
			}
		}
	}
}
