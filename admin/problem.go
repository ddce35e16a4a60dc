package admin

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// problemType is one kind of error the API answers: its RFC 9457 type
// (urn:keygate:problem:<name>), status and title, in one table.
type problemType struct {
	name   string
	status int
	title  string
}

var (
	probInvalid     = problemType{"invalid-request", http.StatusBadRequest, "The request is not valid"}
	probUnauth      = problemType{"unauthorized", http.StatusUnauthorized, "An admin token is required"}
	probForbidden   = problemType{"forbidden", http.StatusForbidden, "This admin token may not do that"}
	probNotFound    = problemType{"not-found", http.StatusNotFound, "Not found"}
	probMethod      = problemType{"method-not-allowed", http.StatusMethodNotAllowed, "Method not allowed"}
	probConflict    = problemType{"conflict", http.StatusConflict, "The key's state does not allow that"}
	probTooLarge    = problemType{"too-large", http.StatusRequestEntityTooLarge, "The request body is too large"}
	probMediaType   = problemType{"unsupported-media-type", http.StatusUnsupportedMediaType, "Unsupported media type"}
	probThrottled   = problemType{"too-many-failures", http.StatusTooManyRequests, "Too many admin tokens that are not valid"}
	probInternal    = problemType{"internal", http.StatusInternalServerError, "Internal error"}
	probUnavailable = problemType{"unavailable", http.StatusServiceUnavailable, "The key store is unavailable"}
)

// problemTypePrefix starts every problem's type URI.
const problemTypePrefix = "urn:keygate:problem:"

// Problem is an RFC 9457 problem details object, the body of every error.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail"`
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError names one field of a request that is wrong and why.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// problem is an error response on its way out.
type problem struct {
	kind   problemType
	detail string
	errors []FieldError
	header http.Header // extra headers (Allow, WWW-Authenticate, Retry-After)
}

func (p *problem) Error() string { return p.kind.name + ": " + p.detail }

func newProblem(kind problemType, detail string) *problem {
	return &problem{kind: kind, detail: detail}
}

func (p *problem) with(key, value string) *problem {
	if p.header == nil {
		p.header = http.Header{}
	}
	p.header.Set(key, value)
	return p
}

func writeProblem(w http.ResponseWriter, p *problem) {
	for k, v := range p.header {
		w.Header()[k] = v
	}
	body := Problem{Type: problemTypePrefix + p.kind.name, Title: p.kind.title, Status: p.kind.status, Detail: p.detail, Errors: p.errors}
	writeBody(w, p.kind.status, "application/problem+json", body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeBody(w, status, "application/json", v)
}

func writeBody(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types are written: unreachable
		status, b = http.StatusInternalServerError, []byte(`{"type":"`+problemTypePrefix+`internal","title":"Internal error","status":500,"detail":"The response could not be encoded."}`)
		contentType = "application/problem+json"
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// fieldErrors collects the problems of one request, one per field.
type fieldErrors []FieldError

// add records a problem with field unless the field has one already.
func (fe *fieldErrors) add(field, detail string) {
	if !fe.has(field) {
		*fe = append(*fe, FieldError{Field: field, Detail: detail})
	}
}

func (fe fieldErrors) has(field string) bool {
	return slices.ContainsFunc(fe, func(e FieldError) bool { return e.Field == field })
}

// hasPrefix reports a problem with field or one of its elements ("scopes[2]").
func (fe fieldErrors) hasPrefix(field string) bool {
	return slices.ContainsFunc(fe, func(e FieldError) bool {
		return e.Field == field || strings.HasPrefix(e.Field, field+"[")
	})
}

// problem is the 400 answer for the collected errors, in the order given
// (the request's fields in the document's order, then the rest by name),
// or nil when there are none.
func (fe fieldErrors) problem(order ...string) *problem {
	if len(fe) == 0 {
		return nil
	}
	rank := func(field string) int {
		base, _, _ := strings.Cut(field, "[")
		if i := slices.Index(order, base); i >= 0 {
			return i
		}
		return len(order)
	}
	sorted := slices.Clone(fe)
	slices.SortStableFunc(sorted, func(a, b FieldError) int {
		if d := rank(a.Field) - rank(b.Field); d != 0 {
			return d
		}
		if rank(a.Field) == len(order) {
			return strings.Compare(a.Field, b.Field)
		}
		return 0
	})
	detail := "1 field is not valid: see errors."
	if len(sorted) > 1 {
		detail = strconv.Itoa(len(sorted)) + " fields are not valid: see errors."
	}
	return &problem{kind: probInvalid, detail: detail, errors: sorted}
}
