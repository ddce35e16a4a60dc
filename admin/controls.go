package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/keygate/keygate/keystore"
)

// disableKey and enableKey switch a key off and on again: 200 with the key
// as it now is, also when it already was (nothing changes then, and no
// audit event is written); a revoked key is 409.
func (s *Server) disableKey(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	return s.setDisabled(w, r, p, s.store.Disable, keystore.ErrDisabled)
}

func (s *Server) enableKey(w http.ResponseWriter, r *http.Request, p Principal) *problem {
	return s.setDisabled(w, r, p, s.store.Enable, keystore.ErrNotDisabled)
}

func (s *Server) setDisabled(w http.ResponseWriter, r *http.Request, p Principal,
	change func(ctx context.Context, id, actor string) (*keystore.Key, error), already error) *problem {
	members, prob := decodeObject(w, r, true, "application/json")
	if prob != nil {
		return prob
	}
	var errs fieldErrors
	unknownFields(members, &errs, nil)
	if prob := errs.problem(); prob != nil {
		return prob
	}
	k, prob := s.key(r, p)
	if prob != nil {
		return prob
	}
	changed, err := change(r.Context(), k.ID, p.Actor())
	switch {
	case errors.Is(err, already):
		changed = k
	case err != nil:
		return s.storeProblem(err)
	}
	writeJSON(w, http.StatusOK, NewKey(changed, s.now()))
	return nil
}
