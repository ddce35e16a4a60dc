package keystore_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

func TestMigrateTwiceIsNoOp(t *testing.T) {
	cfg, err := pgx.ParseConfig(pgtest.NewEmptyDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := keystore.Migrate(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil || len(first) == 0 {
		t.Fatalf("first Migrate = %v, %v; want migrations applied", first, err)
	}
	second, err := keystore.Migrate(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil || len(second) != 0 {
		t.Fatalf("second Migrate = %v, %v; want no-op", second, err)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	url := pgtest.NewEmptyDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	applied := make([]int, 3)
	errs := make([]error, 3)
	for i := range applied {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cfg, _ := pgx.ParseConfig(url)
			r, err := keystore.Migrate(ctx, cfg, slog.New(slog.DiscardHandler))
			applied[i], errs[i] = len(r), err
		}(i)
	}
	wg.Wait()
	total := 0
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("migration %d failed: %v", i, errs[i])
		}
		total += applied[i]
	}
	if want := countMigrations(t); total != want {
		t.Fatalf("concurrent migrations applied %d in all, want each of the %d exactly once", total, want)
	}
	pool := pgtest.Connect(t, url)
	if _, err := pool.Exec(ctx, `SELECT 1 FROM api_keys`); err != nil {
		t.Fatalf("schema missing after concurrent migrations: %v", err)
	}
}

func countMigrations(t *testing.T) int {
	entries, err := keystore.CountMigrationFiles()
	if err != nil {
		t.Fatal(err)
	}
	return entries
}
