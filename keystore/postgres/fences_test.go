package postgres

import (
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/keystore"
)

func TestParseLSN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want lsn
		ok   bool
	}{
		{"0/0", 0, true},
		{"16/B374D848", 0x16_B374D848, true},
		{"FFFFFFFF/FFFFFFFF", never, true},
		{"", 0, false},
		{"16", 0, false},
		{"16/", 0, false},
		{"/1", 0, false},
		{"1/2/3", 0, false},
		{"G/1", 0, false},
		{"100000000/0", 0, false}, // more than 32 bits a half
	} {
		got, err := parseLSN(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseLSN(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("lsn(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestFences(t *testing.T) {
	var a, b keystore.Digest
	a[0], b[0] = 1, 2
	f := newFences()
	if f.need(a) != never {
		t.Fatal("before any session, a standby may answer")
	}
	f.changed([]keystore.Digest{a}, false, 50) // heard outside a session: no effect
	f.listening(100)
	if f.need(a) != 100 || f.need(b) != 100 || f.need() != 100 {
		t.Fatalf("floor: need %v %v, want 100", f.need(a), f.need(b))
	}
	f.changed([]keystore.Digest{a}, false, 200)
	f.changed([]keystore.Digest{a}, false, 150) // an older position never lowers a fence
	if f.need(a) != 200 || f.need(b) != 100 || f.need(a, b) != 200 {
		t.Fatalf("after a change of a: need(a) %v, need(b) %v", f.need(a), f.need(b))
	}
	f.replayedBy(199)
	if f.need(a) != 200 || f.len() != 1 {
		t.Fatal("a fence folded before every standby replayed it")
	}
	f.replayedBy(200)
	if f.len() != 0 || f.need(a) != 200 || f.need(b) != 200 {
		t.Fatalf("folded fence: len %d, need %v %v; want the floor at 200", f.len(), f.need(a), f.need(b))
	}
	f.changed([]keystore.Digest{b}, true, 300) // keys added in bulk raise the floor
	if f.need(a) != 300 {
		t.Fatalf("bulk: need %v, want 300", f.need(a))
	}
	f.listening(400) // a new session starts past everything
	if f.need(a) != 400 || f.len() != 0 {
		t.Fatal("a new session keeps old fences")
	}
	ds := make([]keystore.Digest, maxFences+1)
	for i := range ds {
		ds[i][0], ds[i][1], ds[i][2] = byte(i), byte(i>>8), byte(i>>16)
	}
	f.changed(ds, false, 500)
	if f.len() != 0 || f.need(a) != 500 {
		t.Fatalf("past maxFences: len %d, need %v; want all folded into the floor", f.len(), f.need(a))
	}
	f.deaf()
	if f.need(a) != never {
		t.Fatal("after a session, a standby may answer")
	}
}

func TestSplitHosts(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want []string // host:port, fallbacks of the same host
	}{
		{"postgres://u@a/db?sslmode=disable", []string{"a:5432+0"}},
		{"postgres://u@a:5433,b:5434/db?sslmode=disable", []string{"a:5433+0", "b:5434+0"}},
		{"postgres://u@a,b/db?sslmode=prefer", []string{"a:5432+1", "b:5432+1"}}, // TLS, then plain, each
	} {
		cfg, err := pgxpool.ParseConfig(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range SplitHosts(cfg) {
			for _, fb := range c.ConnConfig.Fallbacks {
				if fb.Host != c.ConnConfig.Host || fb.Port != c.ConnConfig.Port {
					t.Errorf("%s: a fallback of %s is another host, %s", tc.url, c.ConnConfig.Host, fb.Host)
				}
			}
			got = append(got, c.ConnConfig.Host+":"+itoa(int(c.ConnConfig.Port))+"+"+itoa(len(c.ConnConfig.Fallbacks)))
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %v, want %v", tc.url, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: %v, want %v", tc.url, got, tc.want)
			}
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
