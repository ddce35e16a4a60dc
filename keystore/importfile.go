package keystore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// An import file holds one JSON object per line, one key each:
//
//	{"account": "acme", "name": "ci", "description": "…", "scopes": ["projects:read"],
//	 "expires_at": "2027-01-31T00:00:00Z", "key": "<the key in clear>"}
//	{"account": "acme", "name": "old", "sha256": "<64 hex digits: SHA-256 of the key>"}
//
// account and name are required, and exactly one of key and sha256;
// description, scopes, expires_at (RFC 3339; absent or null: the key never
// expires), allowed_cidrs and metadata are optional, with the rules of
// Create. Blank lines are skipped.

// importFields are the members of an import line.
var importFields = []string{"account", "name", "description", "scopes", "expires_at", "allowed_cidrs", "metadata", "key", "sha256"}

// MaxImportLine bounds one line of an import file.
const MaxImportLine = 64 << 10

// ImportOptions configure the reading of an import file.
type ImportOptions struct {
	// AcceptLegacy accepts keys that lack keygate's prefix and checksum
	// (ParseLegacySecret), and sha256 lines, whose key keygate cannot see.
	// Only a server that accepts legacy keys too (authz.Config) lets them
	// authenticate.
	AcceptLegacy bool
}

// ImportKey is one key read from an import file, ready for Store.Import.
type ImportKey struct {
	Line   int // in the file, from 1
	key    Key
	secret Secret // "" for a sha256 line
	sha256 *Digest
}

// ImportError names the line of an import file that is wrong, and its
// field ("" for the line as a whole). It matches ErrInvalid with errors.Is.
// It never holds any part of a key.
type ImportError struct {
	Line    int
	Field   string
	Problem string
}

func (e *ImportError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Problem)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Problem)
}

// Is makes every ImportError match ErrInvalid.
func (e *ImportError) Is(target error) bool { return target == ErrInvalid }

// ReadImport reads an import file, checking every line; the first line
// that is wrong is an *ImportError, and nothing is returned then.
func ReadImport(r io.Reader, opts ImportOptions) ([]ImportKey, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxImportLine)
	var out []ImportKey
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		k, err := ParseImportLine(b, opts)
		if err != nil {
			var ie *ImportError
			if errors.As(err, &ie) {
				ie.Line = line
			}
			return nil, err
		}
		k.Line = line
		out = append(out, k)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &ImportError{Line: line + 1, Problem: fmt.Sprintf("longer than %d bytes", MaxImportLine)}
		}
		return nil, fmt.Errorf("keystore: import: reading: %w", err)
	}
	return out, nil
}

// ParseImportLine reads one line of an import file (see ReadImport); its
// *ImportError has no line number yet.
func ParseImportLine(b []byte, opts ImportOptions) (ImportKey, error) {
	fail := func(field, problem string) (ImportKey, error) {
		return ImportKey{}, &ImportError{Field: field, Problem: problem}
	}
	members, err := decodeMembers(b)
	if err != nil {
		return fail("", err.Error())
	}
	for name := range members {
		if !slices.Contains(importFields, name) {
			return fail("", "unknown field "+fieldName(name)+" (want account, name, description, scopes, expires_at, allowed_cidrs, metadata, and key or sha256)")
		}
	}
	for _, name := range importFields {
		if v, ok := members[name]; ok && CheckJSONText(v) != nil {
			return fail(name, "must be valid UTF-8, without unpaired surrogate escapes (\\ud800)")
		}
	}
	var line struct {
		Account, Name, Description, ExpiresAt, Key, SHA256 string
		Scopes, AllowedCIDRs                               []string
		Metadata                                           map[string]string
	}
	for _, m := range []struct {
		name string
		dst  any
		want string
	}{
		{"account", &line.Account, "a string"},
		{"name", &line.Name, "a string"},
		{"description", &line.Description, "a string"},
		{"expires_at", &line.ExpiresAt, "an RFC 3339 time like 2027-01-31T00:00:00Z, or null"},
		{"scopes", &line.Scopes, "an array of strings"},
		{"allowed_cidrs", &line.AllowedCIDRs, "an array of strings"},
		{"metadata", &line.Metadata, "an object of strings"},
		{"key", &line.Key, "a string"},
		{"sha256", &line.SHA256, "a string"},
	} {
		if v, ok := members[m.name]; ok && string(v) != "null" {
			if json.Unmarshal(v, m.dst) != nil {
				return fail(m.name, "must be "+m.want)
			}
		}
	}
	var k ImportKey
	k.key.Scopes, err = NormalizeScopes(line.Scopes)
	if err == nil {
		k.key.AllowedCIDRs, err = NormalizeCIDRs(line.AllowedCIDRs)
	}
	if err == nil {
		k.key.Metadata, err = NormalizeMetadata(line.Metadata)
	}
	for _, e := range []error{err, importAccount(line.Account),
		ValidateName(line.Name), ValidateDescription(line.Description)} {
		var ve *ValidationError
		if errors.As(e, &ve) {
			return fail(ve.Field, ve.Problem)
		}
	}
	k.key.AccountID, k.key.Name, k.key.Description = line.Account, line.Name, line.Description
	if line.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, line.ExpiresAt)
		if err != nil {
			return fail("expires_at", "must be an RFC 3339 time like 2027-01-31T00:00:00Z")
		}
		t = t.UTC().Truncate(time.Microsecond)
		k.key.ExpiresAt = &t
	}
	_, hasKey := members["key"]
	_, hasSum := members["sha256"]
	switch {
	case hasKey == hasSum:
		return fail("", "give exactly one of key (the key in clear) and sha256 (its SHA-256 in hex)")
	case hasKey:
		if k.secret, err = ParseSecret(line.Key); err == nil {
			break
		}
		if !opts.AcceptLegacy {
			return fail("key", "not a keygate key (its prefix and checksum); to import keys of another system, pass --accept-legacy-keys (and run serve with it)")
		}
		switch k.secret, err = ParseLegacySecret(line.Key); {
		case errors.Is(err, ErrKeygateChecksum):
			return fail("key", "shaped like a keygate key, but its checksum is wrong: a mistyped key?")
		case err != nil:
			return fail("key", fmt.Sprintf("a legacy key must be %d to %d characters of A-Z, a-z, 0-9 and -._~+/=", MinLegacySecretLen, MaxLegacySecretLen))
		}
	default:
		if !opts.AcceptLegacy {
			return fail("sha256", "keygate cannot tell a digest's key has its prefix and checksum: pass --accept-legacy-keys (and run serve with it) to import digests")
		}
		raw, err := hex.DecodeString(line.SHA256)
		var d Digest
		if err != nil || len(raw) != len(d) {
			return fail("sha256", "must be 64 hex digits: the SHA-256 of the key")
		}
		copy(d[:], raw)
		k.sha256 = &d
	}
	return k, nil
}

// importAccount applies the account id rule to an import line's account.
func importAccount(id string) error {
	var ve *ValidationError
	if err := ValidateAccountID(id); errors.As(err, &ve) {
		return invalid("account", ve.Problem)
	}
	return nil
}

// fieldName quotes a member's name if it looks like a field name, which a
// key never does; anything else could be a key pasted in the wrong place,
// and is not repeated.
func fieldName(name string) string {
	if len(name) > 32 || name == "" {
		return "(a name that is not a field)"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c == '_') {
			return "(a name that is not a field)"
		}
	}
	return strconv.Quote(name)
}

// decodeMembers reads one JSON object, refusing duplicate members (which
// parsers read differently). Its errors never quote the input.
func decodeMembers(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	notObject := errors.New("not a JSON object")
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, notObject
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		name, ok := t.(string)
		if err != nil || !ok {
			return nil, fmt.Errorf("not valid JSON at byte %d", dec.InputOffset())
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("not valid JSON at byte %d", dec.InputOffset())
		}
		if _, dup := members[name]; dup {
			return nil, fmt.Errorf("field %s is given twice", fieldName(name))
		}
		members[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not valid JSON at byte %d", dec.InputOffset())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one JSON value on the line")
	}
	return members, nil
}

// Import stores the keys of an import file (ReadImport) in one
// transaction: all of them, or, when one cannot be stored (a key already
// stored, or in the file twice; an expiry in the past, or beyond the
// store's maximum lifetime), none, with an *ImportError naming its line.
// Keys are hashed as Create hashes them (a sha256 line is stored under its
// digest, with the sha256 scheme), each audited as "import", and one
// notification tells every replica to forget what it knew of unknown keys.
// It returns how many keys it stored.
func (s *Store) Import(ctx context.Context, keys []ImportKey, actor string) (int, error) {
	type row struct {
		k      *Key
		digest Digest
		line   int
	}
	rows := make([]row, len(keys))
	lineOf := make(map[Digest]int, len(keys))
	for i := range keys {
		ik := &keys[i]
		k := ik.key // a copy: keys stay as read
		k.CreatedBy = actor
		switch {
		case ik.sha256 != nil:
			k.Digest, k.HashScheme = *ik.sha256, SchemeSHA256
		default:
			k.Digest, k.HashScheme = s.hasher.Digest(ik.secret), s.hasher.Scheme()
			if _, err := ParseSecret(ik.secret.Reveal()); err == nil {
				k.DisplayPrefix = ik.secret.DisplayPrefix()
			} else {
				k.DisplayPrefix = ik.secret.LegacyDisplayPrefix()
			}
		}
		if first, dup := lineOf[k.Digest]; dup {
			return 0, &ImportError{Line: ik.Line, Problem: fmt.Sprintf("the same key as line %d", first)}
		}
		lineOf[k.Digest] = ik.Line
		id, err := uuid.NewV7()
		if err != nil {
			return 0, fmt.Errorf("keystore: import: %w", err)
		}
		k.ID = id.String()
		rows[i] = row{k: &k, digest: k.Digest, line: ik.Line}
	}
	err := s.write(ctx, "import", func(tx Tx, now time.Time) error {
		for _, r := range rows {
			r.k.CreatedAt = now
			if err := s.checkImportedExpiry(r.k.ExpiresAt, now); err != nil {
				return &ImportError{Line: r.line, Field: "expires_at", Problem: err.Error()}
			}
		}
		digests := make([]Digest, len(rows))
		for i := range rows {
			digests[i] = rows[i].digest
		}
		stored, err := tx.StoredDigests(ctx, digests)
		if err != nil {
			return err
		}
		first, firstID := 0, ""
		for d, id := range stored {
			if l := lineOf[d]; first == 0 || l < first {
				first, firstID = l, id
			}
		}
		if first != 0 {
			return &ImportError{Line: first, Problem: "this key is stored already (key " + firstID + ")"}
		}
		keys := make([]*Key, len(rows))
		events := make([]Event, len(rows))
		for i, r := range rows {
			keys[i] = r.k
			detail := createDetail(r.k)
			detail["hash_scheme"] = r.k.HashScheme
			events[i] = Event{KeyID: r.k.ID, Action: "import", Actor: actor, At: now, Detail: detail}
		}
		if err := tx.Insert(ctx, keys...); err != nil {
			return err
		}
		if err := tx.AddEvents(ctx, events...); err != nil {
			return err
		}
		return tx.Notify(ctx, Notice{Added: true})
	})
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			return 0, ie
		}
		if errors.Is(err, ErrDigestTaken) {
			return 0, errors.New("keystore: import: a key of the file was stored meanwhile; nothing was imported")
		}
		return 0, err
	}
	return len(rows), nil
}

// checkImportedExpiry judges an imported key's expiry at now: in the
// future, and within the store's maximum lifetime, which also forbids none.
func (s *Store) checkImportedExpiry(at *time.Time, now time.Time) error {
	switch {
	case at == nil && s.maxLifetime > 0:
		return fmt.Errorf("required: keys must expire within the maximum lifetime of %s", FormatDuration(s.maxLifetime))
	case at == nil:
		return nil
	case !at.After(now):
		return fmt.Errorf("%s is not in the future", at.Format(time.RFC3339))
	case s.maxLifetime > 0 && at.Sub(now) > s.maxLifetime:
		return fmt.Errorf("%s exceeds the maximum lifetime of %s", at.Format(time.RFC3339), FormatDuration(s.maxLifetime))
	}
	return nil
}
