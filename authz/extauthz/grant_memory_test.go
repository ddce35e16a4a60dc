package extauthz

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
)

// BenchmarkGrantMemory reports the heap one shared allow response costs.
//
//	go test ./authz/extauthz -run '^$' -bench GrantMemory -benchtime 16384x
func BenchmarkGrantMemory(b *testing.B) {
	s := newTestServer(b, &authztest.Lookup{}, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := &keystore.Key{ID: fmt.Sprintf("019ab5d2-4c1e-7a3b-9f00-%012d", i), AccountID: fmt.Sprintf("acct-%06d", i),
			Scopes: []string{"deployments:write", "projects:read"}, UpdatedAt: time.Unix(int64(i), 0)}
		d := authz.Decision{Outcome: authz.Allow, Key: k.Record(), Module: "projects"}
		s.grants.Get(&d, s.allowed)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(s.grants.Len()), "heap-bytes/response")
}
