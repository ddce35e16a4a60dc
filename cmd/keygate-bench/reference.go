package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/keygate/keygate/keystore/postgres"
)

// The reference servers, run as subcommands of this binary.
const (
	baselineKind = "baseline-server"
	pgxKind      = "pgx-server"
	sqliteKind   = "sqlite-server"
)

// gcInfo is a Go process's effective GC settings and the environment they
// came from.
type gcInfo struct {
	GOGCEnv       string `json:"gogc_env"`
	GOMEMLIMITEnv string `json:"gomemlimit_env"`
	GOGC          int64  `json:"gogc"`       // percent; -1 is off
	GOMEMLIMIT    int64  `json:"gomemlimit"` // bytes; math.MaxInt64 is none
	GOMAXPROCS    int64  `json:"gomaxprocs"`
	GoVersion     string `json:"go"`
}

// readGCInfo reads this process's settings from runtime/metrics, which the
// environment, debug.SetGCPercent and debug.SetMemoryLimit all feed.
func readGCInfo() gcInfo {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}, {Name: "/sched/gomaxprocs:threads"}}
	metrics.Read(s)
	return gcInfo{
		GOGCEnv:       os.Getenv("GOGC"),
		GOMEMLIMITEnv: os.Getenv("GOMEMLIMIT"),
		GOGC:          int64(s[0].Value.Uint64()),
		GOMEMLIMIT:    int64(s[1].Value.Uint64()),
		GOMAXPROCS:    int64(s[2].Value.Uint64()),
		GoVersion:     runtime.Version(),
	}
}

// gogc is GOGC in the environment's terms.
func (g gcInfo) gogc() string {
	if g.GOGC < 0 {
		return "off"
	}
	return fmt.Sprint(g.GOGC)
}

// String is the settings in the environment's terms.
func (g gcInfo) String() string {
	gogc := g.gogc()
	limit := "none"
	if g.GOMEMLIMIT != math.MaxInt64 {
		limit = fmt.Sprintf("%dMiB", g.GOMEMLIMIT>>20)
	}
	env := func(v string) string {
		if v == "" {
			return "unset"
		}
		return v
	}
	return fmt.Sprintf("GOGC=%s GOMEMLIMIT=%s GOMAXPROCS=%d (env GOGC %s, GOMEMLIMIT %s)",
		gogc, limit, g.GOMAXPROCS, env(g.GOGCEnv), env(g.GOMEMLIMITEnv))
}

// readyLine is what a reference server prints on stdout once it accepts
// connections.
type readyLine struct {
	Addr     string `json:"addr"`
	GC       gcInfo `json:"gc"`
	MaxConns int32  `json:"max_conns,omitempty"`
}

// runReferenceServer serves Check until ctx ends.
func runReferenceServer(ctx context.Context, kind string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	dbURL := fs.String("database-url", "", "the database to query: PostgreSQL ("+pgxKind+") or sqlite:PATH ("+sqliteKind+")")
	identity := fs.Bool("identity", false, "allow with keygate's answer (identityAllow) instead of status OK alone")
	if err := fs.Parse(args); err != nil {
		return err
	}
	allow := emptyAllow
	if *identity {
		allow = identityAllow
	}
	var (
		srv   authv3.AuthorizationServer = baselineServer{allow: allow}
		ready readyLine
	)
	if kind == pgxKind {
		cfg, err := pgxpool.ParseConfig(*dbURL)
		if err != nil {
			return fmt.Errorf("--database-url: %w", err)
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := pool.Ping(ctx); err != nil {
			return err
		}
		srv = &pgxServer{pool: pool, allow: allow}
		ready.MaxConns = cfg.MaxConns
	}
	if kind == sqliteKind {
		ss, err := openSQLiteServer(ctx, strings.TrimPrefix(*dbURL, "sqlite:"), allow)
		if err != nil {
			return err
		}
		defer ss.close()
		srv, ready.MaxConns = ss, sqliteReaders
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer() // grpc-go defaults, as keygate
	authv3.RegisterAuthorizationServer(s, srv)
	ready.Addr, ready.GC = lis.Addr().String(), readGCInfo()
	errs := make(chan error, 1)
	go func() { errs <- s.Serve(lis) }()
	if err := json.NewEncoder(stdout).Encode(ready); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		return err
	}
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		s.Stop()
	}
	return nil
}

// baselineServer allows every request without looking at it: the cost of
// gRPC itself (and, with identityAllow, of keygate's answer).
type baselineServer struct {
	authv3.UnimplementedAuthorizationServer
	allow *authv3.CheckResponse
}

func (s baselineServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.allow, nil
}

// pgxServer makes the uncached path's one query, as plainly as pgx allows,
// and allows the request if the key exists: the cost of gRPC plus one
// indexed point query.
type pgxServer struct {
	authv3.UnimplementedAuthorizationServer
	pool  *pgxpool.Pool
	allow *authv3.CheckResponse
}

var deniedStatus = &status.Status{Code: int32(code.Code_PERMISSION_DENIED)}

func (s *pgxServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	digest := sha256.Sum256([]byte(req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-api-key"]))
	// keygate's own query (postgres.LookupSQL), scanned as plainly as pgx
	// allows: the database and the wire carry the same work.
	var (
		id, account, metadata, limits string
		scopes                        []string
		expiresAt                     *time.Time
		revoked, disabled             bool
		updatedAt                     time.Time
		cidrs                         []netip.Prefix
	)
	err := s.pool.QueryRow(ctx, postgres.LookupSQL, digest[:]).Scan(&id, &account, &scopes, &expiresAt, &revoked, &disabled,
		&updatedAt, &cidrs, &metadata, &limits)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return &authv3.CheckResponse{Status: deniedStatus}, nil
	case err != nil:
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(code.Code_UNAVAILABLE), Message: err.Error()}}, nil
	}
	return s.allow, nil
}

// sqliteReaders is the reference's connections to its SQLite file, as
// many as keygate's SQLite store reads with (sqlite.Options.Readers'
// default).
const sqliteReaders = 4

// sqliteServer makes the uncached path's one query on SQLite, as plainly
// as database/sql allows (a statement prepared once), and allows the
// request if the key exists: the cost of gRPC plus one indexed point
// query in the same embedded database.
type sqliteServer struct {
	authv3.UnimplementedAuthorizationServer
	db    *sql.DB
	stmt  *sql.Stmt
	allow *authv3.CheckResponse
}

// sqliteLookupSQL selects what keygate's SQLite store selects for a
// decision (its decisionColumns).
const sqliteLookupSQL = `SELECT id, account_id, scopes, expires_at, revoked_at IS NOT NULL, disabled_at IS NOT NULL, updated_at,
	allowed_cidrs, metadata, limits FROM api_keys WHERE digest = ?`

func openSQLiteServer(ctx context.Context, path string, allow *authv3.CheckResponse) (*sqliteServer, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(sqliteReaders)
	db.SetMaxIdleConns(sqliteReaders)
	stmt, err := db.PrepareContext(ctx, sqliteLookupSQL)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &sqliteServer{db: db, stmt: stmt, allow: allow}, nil
}

func (s *sqliteServer) close() {
	s.stmt.Close()
	s.db.Close()
}

func (s *sqliteServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	digest := sha256.Sum256([]byte(req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-api-key"]))
	var (
		id, account, scopes, cidrs, metadata, limits sql.NullString
		expires, updated                             sql.NullInt64
		revoked, disabled                            bool
	)
	err := s.stmt.QueryRowContext(ctx, digest[:]).Scan(&id, &account, &scopes, &expires, &revoked, &disabled, &updated, &cidrs, &metadata, &limits)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return &authv3.CheckResponse{Status: deniedStatus}, nil
	case err != nil:
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(code.Code_UNAVAILABLE), Message: err.Error()}}, nil
	}
	return s.allow, nil
}
