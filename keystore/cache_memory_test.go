package keystore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keygate/keygate/keystore"
)

// recordSource answers every lookup with the record of a realistic key
// made up on the spot, to measure what the cache holds per key without a
// database.
type recordSource struct{}

func (recordSource) Lookup(_ context.Context, d keystore.Digest) (*keystore.Record, error) {
	n := binary.BigEndian.Uint64(d[:8])
	id, _ := uuid.NewV7()
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	expires := created.Add(90 * 24 * time.Hour)
	k := &keystore.Key{
		ID:            id.String(),
		AccountID:     fmt.Sprintf("acct-%06d", n%100000),
		Name:          "ci deploy key",
		Description:   "used by the deploy pipeline",
		DisplayPrefix: "kg_AbC123",
		Scopes:        []string{"deployments:write", "projects:read"},
		HashScheme:    keystore.SchemeSHA256,
		CreatedAt:     created,
		CreatedBy:     "cli:alice",
		ExpiresAt:     &expires,
		Digest:        d,
		UpdatedAt:     created,
	}
	return k.Record(), nil // what the store's Lookup reads of it
}

// BenchmarkCacheMemory measures the heap a cached key costs: it fills a
// cache with b.N keys (run it with -benchtime=1000000x for a million) and
// reports bytes per key, record included.
//
//	go test ./keystore -run '^$' -bench CacheMemory -benchtime 1000000x
func BenchmarkCacheMemory(b *testing.B) {
	c, err := keystore.NewCache(recordSource{}, keystore.CacheOptions{MaxKeys: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx := context.Background()
	var d keystore.Digest
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint64(d[:8], uint64(i))
		if _, err := c.Lookup(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if c.Len() < b.N*9/10 {
		b.Fatalf("cache holds %d of %d keys", c.Len(), b.N)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(c.Len()), "heap-bytes/key")
	b.ReportMetric(float64(c.Len()), "keys")
	runtime.KeepAlive(c)
}

// TestCacheStaysWithinItsSize fills a cache of 100 keys with 5,000
// different ones, from several goroutines: the cache's upkeep (eviction)
// runs as the misses write (keystore.RunInline), so when the last lookup
// returns the cache holds about its size, not what a goroutine started
// for the upkeep has yet to evict.
func TestCacheStaysWithinItsSize(t *testing.T) {
	const size, keys, workers = 100, 5000, 4
	c, err := keystore.NewCache(recordSource{}, keystore.CacheOptions{MaxKeys: size})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, workers)
	for w := range workers {
		go func() {
			var d keystore.Digest
			for i := w; i < keys; i += workers {
				binary.BigEndian.PutUint64(d[:8], uint64(i))
				if _, err := c.Lookup(context.Background(), d); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range workers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// otter's write buffer may hold the last few writes until the next
	// cache operation drains it.
	if n := c.Len(); n > size+workers*16 {
		t.Fatalf("a cache of %d keys holds %d after %d lookups", size, n, keys)
	}
}
