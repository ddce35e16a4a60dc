package admin

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/keygate/keygate/keystore"
)

// Listing limits: a page holds DefaultPageSize keys unless the request
// asks for 1 to MaxPageSize.
const (
	DefaultPageSize = 50
	MaxPageSize     = 200
)

// nameScan bounds a search by name: it reads the keys the other filters
// select in batches, newest first, and at most max of them for one page;
// a page may then hold fewer keys than asked, with a next cursor to go on
// from.
type nameScan struct{ batch, max int }

// defaultNameScan reads batches of 500 keys, 10,000 at most for a page.
var defaultNameScan = nameScan{batch: 500, max: 10000}

// statusFilters are the status filters by name.
var statusFilters = map[string]keystore.StatusFilter{
	"active": keystore.ListActive, "all": keystore.ListAll, "expired": keystore.ListExpired, "revoked": keystore.ListRevoked,
	"disabled": keystore.ListDisabled,
}

// StatusNames are the names ParseStatus reads, as the API documents them.
const StatusNames = "active, disabled, expired, revoked or all"

// ParseStatus reads a status filter by its name, as the admin API's status
// parameter and the CLI's --status take it (StatusNames).
func ParseStatus(name string) (keystore.StatusFilter, bool) {
	f, ok := statusFilters[name]
	return f, ok
}

// ListRequest selects one page of keys, newest first. GET /v1/keys and
// the CLI's keys list take the same request and page the same way.
type ListRequest struct {
	AccountID string                // "": every account
	Status    keystore.StatusFilter // default: active keys
	// Name, when set, keeps the keys whose name contains it, ignoring
	// case.
	Name string
	// Limit is the most keys in the page, 1 to MaxPageSize; 0 means
	// DefaultPageSize.
	Limit int
	// Cursor continues a listing: the NextCursor of the page before.
	Cursor string
}

// Page is one page of keys, newest first.
type Page struct {
	Keys []*keystore.Key
	// NextCursor continues the listing; "" on the last page.
	NextCursor string
}

// ListKeys returns the page req selects. A request that is wrong is an
// error joining one *keystore.ValidationError per field (account_id,
// name, limit, cursor); nothing else is read then.
func ListKeys(ctx context.Context, store *keystore.Store, req ListRequest) (Page, error) {
	return listKeys(ctx, store, req, defaultNameScan)
}

// The problems of a list request's limit and cursor, as Check and
// GET /v1/keys say them.
var (
	limitProblem  = fmt.Sprintf("must be a whole number from 1 to %d", MaxPageSize)
	cursorProblem = "must be a next cursor this listing returned"
)

// Check reports every field of req that is wrong (account_id, name,
// limit, cursor): one *keystore.ValidationError each, joined; nil when
// req may be listed.
func (req ListRequest) Check() error {
	var problems []error
	if req.AccountID != "" {
		problems = append(problems, keystore.ValidateAccountID(req.AccountID))
	}
	if req.Limit < 0 || req.Limit > MaxPageSize {
		problems = append(problems, invalid("limit", limitProblem))
	}
	if _, ok := decodeCursor(req.Cursor); req.Cursor != "" && !ok {
		problems = append(problems, invalid("cursor", cursorProblem))
	}
	if req.Name != "" && (!utf8.ValidString(req.Name) || utf8.RuneCountInString(req.Name) > keystore.MaxNameLen) {
		problems = append(problems, invalid("name", fmt.Sprintf("must be valid UTF-8 of at most %d characters", keystore.MaxNameLen)))
	}
	return errors.Join(problems...)
}

func listKeys(ctx context.Context, store *keystore.Store, req ListRequest, scan nameScan) (Page, error) {
	if err := req.Check(); err != nil {
		return Page{}, err
	}
	params := keystore.ListParams{AccountID: req.AccountID, Status: req.Status, Newest: true}
	limit := cmp.Or(req.Limit, DefaultPageSize)
	if req.Cursor != "" {
		pos, _ := decodeCursor(req.Cursor)
		params.After = &pos
	}
	if req.Name == "" {
		params.Limit = limit + 1 // one more tells whether there is a next page
		keys, err := store.List(ctx, params)
		if err != nil {
			return Page{}, err
		}
		return page(keys, limit), nil
	}
	return searchByName(ctx, store, params, strings.ToLower(req.Name), limit, scan)
}

// page is the first limit of keys, with a next cursor if there are more.
func page(keys []*keystore.Key, limit int) Page {
	if len(keys) <= limit {
		return Page{Keys: keys}
	}
	return Page{Keys: keys[:limit], NextCursor: encodeCursor(keys[limit-1].Position())}
}

// searchByName reads the keys params selects, in batches, keeping those
// whose lower-cased name contains name, until it has one more than limit,
// runs out of keys, or has read scan.max (then the page ends at the last
// key read).
func searchByName(ctx context.Context, store *keystore.Store, params keystore.ListParams, name string, limit int, scan nameScan) (Page, error) {
	var found []*keystore.Key
	params.Limit = scan.batch
	for scanned := 0; ; {
		keys, err := store.List(ctx, params)
		if err != nil {
			return Page{}, err
		}
		for _, k := range keys {
			if strings.Contains(strings.ToLower(k.Name), name) {
				if found = append(found, k); len(found) > limit {
					return page(found, limit), nil
				}
			}
		}
		scanned += len(keys)
		if len(keys) < scan.batch {
			return Page{Keys: found}, nil
		}
		last := keys[len(keys)-1].Position()
		if scanned >= scan.max {
			return Page{Keys: found, NextCursor: encodeCursor(last)}, nil
		}
		params.After = &last
	}
}

func invalid(field, problem string) error {
	return &keystore.ValidationError{Field: field, Problem: problem}
}

// A cursor is opaque to clients: base64url of "<unix microseconds>.<id>",
// the last listed key's position.
func encodeCursor(p keystore.Position) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.CreatedAt.UnixMicro(), 10) + "." + p.ID))
}

// maxCursorMicros is the last instant a cursor may name,
// 9999-12-31T23:59:59.999999Z: every time a key is created at, and none a
// database or a driver could fail to hold.
const maxCursorMicros = 253402300799999999

// decodeCursor reads a cursor as encodeCursor writes it, and nothing else:
// a tampered cursor is the client's mistake (400), so everything the store
// would refuse is refused here.
func decodeCursor(s string) (keystore.Position, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 64 {
		return keystore.Position{}, false
	}
	micros, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(micros, 10, 64)
	if !ok || err != nil || n < 0 || n > maxCursorMicros || strconv.FormatInt(n, 10) != micros {
		return keystore.Position{}, false
	}
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		return keystore.Position{}, false
	}
	return keystore.Position{CreatedAt: time.UnixMicro(n).UTC(), ID: id}, true
}
