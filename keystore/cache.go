package keystore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"
)

// CacheOptions configure a Cache. The zero value of every field selects
// the default the field names.
type CacheOptions struct {
	// MaxKeys bounds the number of digests held (valid, revoked or
	// unknown). Default 100,000. A cached key costs about 280 bytes of heap
	// (BenchmarkCacheMemory), so a million keys take about 280 MB.
	MaxKeys int
	// Fresh is how long a cached key is used without asking the store;
	// after it, the next use refreshes it in the background while the
	// cached record keeps answering. Changes reach the cache sooner
	// through notifications and the delta poll. Default 1 minute.
	Fresh time.Duration
	// MaxStale is how long past Fresh a key may still be used while the
	// store cannot answer. After it, the key needs the store (503 while it
	// is down). Default 15 minutes; NoMaxStale allows no stale answers at
	// all.
	MaxStale time.Duration
	// LoadTimeout bounds one query to the store, well inside Envoy's
	// ext_authz timeout (200 ms by default). Default 100 ms.
	LoadTimeout time.Duration
	// NegativeTTL is how long a well-formed but unknown key is remembered
	// as unknown, so that a flood of made-up keys costs no queries. A key
	// created meanwhile is announced and clears the entry at once.
	// Default 5 seconds.
	NegativeTTL time.Duration
	// MaxLoads bounds the store queries the cache runs at once, for all
	// digests together (concurrent misses of one digest share one
	// query): a replica started under load, with nothing cached, asks the
	// database at most this many questions at a time, and a miss waits for
	// a slot within LoadTimeout (then 503). Default DefaultMaxLoads.
	MaxLoads int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Tracer, when set, records a span for each store query the cache
	// makes: a query shared by concurrent requests is linked from each of
	// their spans, and a background refresh links the request that
	// started it.
	Tracer trace.Tracer
}

// NoMaxStale, as CacheOptions.MaxStale, makes every key older than Fresh
// need the store: no stale answers while it is down.
const NoMaxStale time.Duration = -1

// Source is what the cache reads through to: the store.
type Source interface {
	Lookup(ctx context.Context, d Digest) (*Record, error)
}

// Cache is a read-through cache of key records by digest in front of the store,
// with the same Lookup method, so that the decision path cannot tell them
// apart. It is bounded (otter, S3-FIFO eviction), deduplicates concurrent
// misses of one digest into one query, remembers unknown digests briefly,
// refreshes entries in the background once they are older than Fresh, and
// keeps answering from entries up to Fresh+MaxStale old while the store is
// unreachable. It holds records, not decisions: expiry and revocation are
// checked by the caller on every use.
type Cache struct {
	src                     Source
	entries                 *otter.Cache[Digest, cacheEntry]
	loads                   singleflight.Group
	fresh, maxStale, negTTL time.Duration
	now                     func() time.Time
	monotonic               bool      // now is time.Now: clock reads only the monotonic clock
	base                    time.Time // cacheEntry.fetched counts from it
	loadTimeout             time.Duration
	loadSlots               chan struct{} // one per query running (MaxLoads)
	tracer                  trace.Tracer
	// generations are bumped by every invalidation of a digest in their
	// stripe (the digest's first byte), so that a query that was running
	// meanwhile does not cache its possibly older answer; mu makes "check
	// the generation, then store" atomic with respect to invalidations.
	generations [256]atomic.Uint64
	mu          sync.RWMutex
	// refreshes are the times (on the cache's clock, from base) of the
	// last background refresh started in each stripe of digests.
	refreshes [refreshStripes]atomic.Int64
	// background are the refreshes running; Close waits for them, and
	// none starts once closed is set (under closing).
	background sync.WaitGroup
	closing    sync.RWMutex
	closed     bool
	stats      CacheStats
}

// cacheEntry is one digest's cached answer: a key record, or nil for "no
// such key", and when the store gave it. It is held by value (16 bytes in
// the cache's own node), so that a cached key costs the node, its Record
// and the Record's text, and nothing else.
type cacheEntry struct {
	key     *Record
	fetched int64 // nanoseconds after Cache.base
}

// refreshEvery spaces background refreshes of the digests of one stripe
// (refreshStripes of them, by digest), so that a store outage costs at most
// one failed query per stripe per interval, not one per request.
const (
	refreshEvery   = 500 * time.Millisecond
	refreshStripes = 4096
)

// CacheStats are counters for metrics; read them with Stats.
type CacheStats struct {
	Hits, NegativeHits, Misses, StaleServed, Invalidations, Loads, LoadErrors atomic.Uint64
}

// Defaults of CacheOptions.
const (
	DefaultCacheKeys   = 100_000
	DefaultFresh       = time.Minute
	DefaultMaxStale    = 15 * time.Minute
	DefaultNegativeTTL = 5 * time.Second
	DefaultLoadTimeout = 100 * time.Millisecond
	DefaultMaxLoads    = 16
)

// NewCache returns a cache in front of src.
func NewCache(src Source, opts CacheOptions) (*Cache, error) {
	c := &Cache{src: src, fresh: opts.Fresh, maxStale: opts.MaxStale, negTTL: opts.NegativeTTL, now: opts.Now,
		loadTimeout: opts.LoadTimeout, tracer: opts.Tracer}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultCacheKeys
	}
	if opts.MaxLoads == 0 {
		opts.MaxLoads = DefaultMaxLoads
	}
	if c.fresh == 0 {
		c.fresh = DefaultFresh
	}
	switch {
	case c.maxStale == 0:
		c.maxStale = DefaultMaxStale
	case c.maxStale == NoMaxStale:
		c.maxStale = 0
	}
	if c.negTTL == 0 {
		c.negTTL = DefaultNegativeTTL
	}
	if c.loadTimeout == 0 {
		c.loadTimeout = DefaultLoadTimeout
	}
	if c.now == nil {
		c.now, c.monotonic = time.Now, true
	}
	c.base = c.now()
	switch {
	case opts.MaxKeys < 0:
		return nil, errors.New("keystore: cache size must be positive")
	case opts.MaxLoads < 0:
		return nil, errors.New("keystore: the cache's concurrent loads must be positive")
	case c.fresh < 0 || c.maxStale < 0 || c.negTTL < 0 || c.loadTimeout < 0:
		return nil, errors.New("keystore: cache durations must not be negative")
	}
	c.loadSlots = make(chan struct{}, opts.MaxLoads)
	var err error
	c.entries, err = otter.New(&otter.Options[Digest, cacheEntry]{
		MaximumSize: opts.MaxKeys,
		Executor:    RunInline,
		// Entries leave on their own once no rule could use them any
		// more; the rules themselves use the injected clock.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[Digest, cacheEntry]) time.Duration {
			if e.Value.key == nil {
				return c.negTTL
			}
			return c.fresh + c.maxStale
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: cache: %w", err)
	}
	return c, nil
}

// RunInline is keygate's otter executor (the key cache's and
// authz.Grants'): it runs a cache's upkeep (draining the eviction policy's
// buffers) on the goroutine that read or wrote, under otter's try-lock,
// instead of on a goroutine started for it. otter's default starts one
// whenever the buffers need draining, which on the miss path is nearly
// every miss: that goroutine, and the thread woken to run it, were about
// 4% of the uncached path's CPU (keygate-bench, profiled). keygate gives
// otter no deletion handler, loader or refresher, so nothing else runs on
// it.
func RunInline(fn func()) { fn() }

// Lookup returns the record of the key stored under d, from memory when it
// can.
func (c *Cache) Lookup(ctx context.Context, d Digest) (*Record, error) {
	k, _, err := c.LookupCached(ctx, d)
	return k, err
}

// clock is the cache's clock, as cacheEntry.fetched counts it.
func (c *Cache) clock() int64 {
	if c.monotonic {
		return int64(time.Since(c.base)) // the same, without reading the wall clock too
	}
	return int64(c.now().Sub(c.base))
}

// LookupCached is Lookup, and whether the answer came from memory.
func (c *Cache) LookupCached(ctx context.Context, d Digest) (*Record, bool, error) {
	if k, ok := c.fromMemory(ctx, d); ok {
		if k == nil {
			return nil, true, ErrNotFound
		}
		return k, true, nil
	}
	c.stats.Misses.Add(1)
	k, err := c.load(ctx, d)
	return k, false, err
}

// Peek returns the record under d if the cache would answer a lookup with
// it from memory, without asking the store on a miss: ok is false for a
// digest the cache holds no record of (an unknown-key entry included). A
// stale record is refreshed behind it, as Lookup does.
func (c *Cache) Peek(ctx context.Context, d Digest) (*Record, bool) {
	k, ok := c.fromMemory(ctx, d)
	return k, ok && k != nil
}

// fromMemory is the cache's answer for d, if it has one: a record, or nil
// for an unknown key; ok is false when the store must be asked.
func (c *Cache) fromMemory(ctx context.Context, d Digest) (k *Record, ok bool) {
	e, found := c.entries.GetIfPresent(d)
	if !found {
		return nil, false
	}
	age := time.Duration(c.clock() - e.fetched)
	switch {
	case e.key == nil:
		if age < c.negTTL {
			c.stats.NegativeHits.Add(1)
			return nil, true
		}
	case age < c.fresh:
		c.stats.Hits.Add(1)
		return e.key, true
	case age < c.fresh+c.maxStale:
		// Stale: answer now and refresh behind the request (within
		// milliseconds when the store answers). While the store is down
		// the refreshes fail and the entry keeps answering until it is
		// older than Fresh+MaxStale.
		c.stats.StaleServed.Add(1)
		c.refreshInBackground(ctx, d)
		return e.key, true
	}
	return nil, false
}

// load reads d from the store, one query for all concurrent callers, and
// caches the answer unless an invalidation raced with the query. The query
// has its own deadline (LoadTimeout), and the caller stops waiting when
// its context ends; the query then still fills the cache for the next one.
//
// A caller whose deadline is at least LoadTimeout away (or who has none,
// as a gRPC request from Envoy with its 200ms deadline, or an HTTP one)
// runs the query on its own goroutine: the wait could not outlast its
// deadline anyway, and a goroutine started per miss would grow a fresh
// stack through the driver on every query (about a tenth of the uncached
// path's CPU, measured with keygate-bench). Such a caller, if cancelled,
// waits for the query, at most LoadTimeout; the others wait on a channel.
func (c *Cache) load(ctx context.Context, d Digest) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("keystore: lookup: %w: %w", ErrUnavailable, err)
	}
	query := func() (any, error) {
		loadCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.loadTimeout)
		defer cancel()
		loadCtx, span := c.startSpan(loadCtx, "keystore.cache.load")
		k, err := c.fetch(loadCtx, d)
		endSpan(span, err)
		return loaded{k, span.SpanContext()}, err
	}
	var r singleflight.Result
	if deadline, ok := ctx.Deadline(); !ok || time.Until(deadline) >= c.loadTimeout {
		r.Val, r.Err, r.Shared = c.loads.Do(string(d[:]), query)
	} else {
		select {
		case r = <-c.loads.DoChan(string(d[:]), query):
		case <-ctx.Done():
			return nil, fmt.Errorf("keystore: lookup: %w: %w", ErrUnavailable, ctx.Err())
		}
	}
	l, _ := r.Val.(loaded)
	if l.span.IsValid() {
		// Every request that waited for this query links it (the
		// first one is also its parent).
		trace.SpanFromContext(ctx).AddLink(trace.Link{SpanContext: l.span})
	}
	if r.Err != nil {
		return nil, r.Err
	}
	if l.key == nil {
		return nil, ErrNotFound
	}
	return l.key, nil
}

// loaded is the result of a shared load: the key (nil: none) and the
// load's span.
type loaded struct {
	key  *Record
	span trace.SpanContext
}

// startSpan starts a span when the cache traces; otherwise it returns ctx
// and a span that records nothing.
func (c *Cache) startSpan(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if c.tracer == nil {
		return ctx, trace.SpanFromContext(context.Background()) // records nothing
	}
	return c.tracer.Start(ctx, name, opts...)
}

// endSpan ends a load's span, with its error.
func endSpan(span trace.Span, err error) {
	if err != nil && !errors.Is(err, ErrNotFound) {
		span.SetStatus(codes.Error, "store lookup failed")
	}
	span.End()
}

// fetch queries the store and caches the answer (a key, or nil for none).
// A panic in the store becomes an error: fetch runs on goroutines of its
// own, where nobody else could recover it.
func (c *Cache) fetch(ctx context.Context, d Digest) (k *Record, err error) {
	defer func() {
		if p := recover(); p != nil {
			k, err = nil, fmt.Errorf("keystore: lookup panicked (%v): %w", p, ErrUnavailable)
		}
	}()
	select {
	case c.loadSlots <- struct{}{}:
		defer func() { <-c.loadSlots }()
	case <-ctx.Done():
		c.stats.LoadErrors.Add(1)
		return nil, fmt.Errorf("keystore: lookup: %w: all %d concurrent loads busy: %w", ErrUnavailable, cap(c.loadSlots), ctx.Err())
	}
	gen := &c.generations[d[0]]
	before := gen.Load()
	started := c.clock()
	c.stats.Loads.Add(1)
	k, err = c.src.Lookup(ctx, d)
	switch {
	case err == nil, errors.Is(err, ErrNotFound):
		c.mu.RLock()
		if gen.Load() == before {
			// No change to this digest was announced while the query ran,
			// so its answer is at least as new as anything the cache has
			// heard of.
			c.entries.Set(d, cacheEntry{key: k, fetched: started})
		}
		c.mu.RUnlock()
		return k, nil
	default:
		c.stats.LoadErrors.Add(1)
		return nil, err
	}
}

// refreshInBackground reloads a stale entry without holding up the
// request that found it (whose span, in ctx, the refresh's span links); at
// most one refresh per stripe of digests every refreshEvery.
func (c *Cache) refreshInBackground(ctx context.Context, d Digest) {
	now := c.clock()
	last := &c.refreshes[(int(d[1])<<8|int(d[2]))%refreshStripes]
	if prev := last.Load(); now-prev < int64(refreshEvery) || !last.CompareAndSwap(prev, now) {
		return
	}
	c.closing.RLock()
	defer c.closing.RUnlock()
	if c.closed {
		return
	}
	trigger := trace.SpanContextFromContext(ctx)
	c.background.Go(func() {
		// fetch recovers panics itself.
		ctx, cancel := context.WithTimeout(context.Background(), c.loadTimeout)
		defer cancel()
		ctx, span := c.startSpan(ctx, "keystore.cache.refresh", trace.WithLinks(trace.Link{SpanContext: trigger}))
		// A failure is counted by fetch (LoadErrors); the entry keeps
		// answering until it is too old.
		_, err, _ := c.loads.Do(string(d[:]), func() (any, error) {
			k, err := c.fetch(ctx, d)
			return loaded{k, span.SpanContext()}, err
		})
		endSpan(span, err)
	})
}

// Close waits for the background refreshes under way and starts no more;
// lookups keep working (a stale entry is then answered without a refresh
// until it is too old). It is safe to call more than once.
func (c *Cache) Close() {
	c.closing.Lock()
	c.closed = true
	c.closing.Unlock()
	c.background.Wait()
}

// Invalidate forgets what the cache knows of d, so that the next lookup
// asks the store; a query already running for d will not cache its
// (possibly older) answer. Change notifications call it.
func (c *Cache) Invalidate(d Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generations[d[0]].Add(1)
	c.stats.Invalidations.Add(1)
	c.entries.Invalidate(d)
}

// Update replaces the cached record under d, if the cache holds d at all
// and r is a newer version, with r, a record just read from the store; the
// delta poll and the resync call it. Unknown-key entries are dropped.
func (c *Cache) Update(d Digest, r *Record, fetched time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries.GetIfPresent(d)
	if !ok || (e.key != nil && r.version <= e.key.version) {
		return // not cached, or cached at this version or a newer one
	}
	c.generations[d[0]].Add(1)
	c.stats.Invalidations.Add(1)
	if e.key == nil {
		c.entries.Invalidate(d)
		return
	}
	c.entries.Set(d, cacheEntry{key: r, fetched: int64(fetched.Sub(c.base))})
}

// Digests returns the digests of the cached keys (not of unknown keys).
func (c *Cache) Digests() []Digest {
	out := make([]Digest, 0, c.entries.EstimatedSize())
	for d, e := range c.entries.All() {
		if e.key != nil {
			out = append(out, d)
		}
	}
	return out
}

// ForgetUnknown drops every unknown-key entry.
func (c *Cache) ForgetUnknown() {
	for d, e := range c.entries.All() {
		if e.key == nil {
			c.Invalidate(d)
		}
	}
}

// Len is the number of cached digests.
func (c *Cache) Len() int { return c.entries.EstimatedSize() }

// Stats returns the cache's counters.
func (c *Cache) Stats() *CacheStats { return &c.stats }
