// Package pgcluster starts throwaway PostgreSQL clusters from the local
// server binaries (initdb and pg_ctl on PATH or under
// /usr/lib/postgresql/*/bin), for tests and for `keygate dev`. As root,
// the binaries run as the postgres user, since initdb refuses root. A
// cluster lives in a temporary directory, listens on 127.0.0.1 only, trusts
// local connections, and trades durability for speed (fsync off): it is
// for data nobody needs tomorrow.
package pgcluster
