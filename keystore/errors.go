package keystore

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Errors the store returns, wrapped with context; test them with errors.Is.
var (
	// ErrNotFound: no key with that id (or digest).
	ErrNotFound = errors.New("keystore: key not found")
	// ErrInvalid: the request itself is wrong (a *ValidationError says
	// which field and why). Nothing was written.
	ErrInvalid = errors.New("keystore: invalid request")
	// ErrRevoked: the key is revoked, so it cannot be revoked again,
	// rotated, disabled or enabled.
	ErrRevoked = errors.New("keystore: key is revoked")
	// ErrExpired: the key has expired, so it cannot be rotated.
	ErrExpired = errors.New("keystore: key has expired")
	// ErrDisabled: the key is disabled already.
	ErrDisabled = errors.New("keystore: key is disabled")
	// ErrNotDisabled: the key is not disabled, so there is nothing to
	// enable.
	ErrNotDisabled = errors.New("keystore: key is not disabled")
	// ErrRotated: the key has already been rotated; rotate its successor.
	ErrRotated = errors.New("keystore: key has already been rotated")
	// ErrUnavailable: the database could not be reached or did not answer
	// in time. The decision path turns it into a 503, never an allow.
	ErrUnavailable = errors.New("keystore: store unavailable")
)

// ValidationError names the field of a request that is wrong and why. It
// matches ErrInvalid with errors.Is. Its message never contains secrets.
type ValidationError struct {
	Field   string
	Problem string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Problem }

// Is makes every ValidationError match ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, problem string) error {
	return &ValidationError{Field: field, Problem: problem}
}

func invalidf(field, format string, args ...any) error {
	return invalid(field, fmt.Sprintf(format, args...))
}

// maxEcho bounds how much of a refused input an error repeats, counted in
// the bytes the error shows: a NUL or a stray byte shows as four
// (\x00), so a byte count alone would not bound it.
const maxEcho = 48

// echo quotes the start of a refused input for an error message: at most
// maxEcho bytes as shown, cut at a character boundary, with "…" when
// something was left off. Whatever the input (NULs, invalid UTF-8, a
// pasted key, a megabyte), the error stays short and printable.
func echo(s string) string {
	out := make([]byte, 0, maxEcho+8)
	out = append(out, '"')
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		q := strconv.Quote(s[i : i+size])
		q = q[1 : len(q)-1]
		if len(out)-1+len(q) > maxEcho {
			return string(append(out, `"…`...))
		}
		out = append(out, q...)
		i += size
	}
	return string(append(out, '"'))
}
