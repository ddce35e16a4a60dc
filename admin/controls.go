package admin

import (
	"context"
	"encoding/json"
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
	members, prob := decodeObject(r, true, "application/json")
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

// metadataPatch reads the metadata member of a merge patch: null removes
// every entry; an object's string members set entries and its null members
// remove them. Problems go to errs, and the change is checked as far as it
// can be without the key.
func metadataPatch(raw json.RawMessage, errs *fieldErrors) *keystore.MetadataChange {
	if string(raw) == "null" {
		return &keystore.MetadataChange{Clear: true}
	}
	var members map[string]*string
	if err := json.Unmarshal(raw, &members); err != nil {
		errs.add("metadata", "must be an object of strings (null removes an entry), or null")
		return nil
	}
	c := &keystore.MetadataChange{Set: map[string]string{}}
	for k, v := range members {
		if v == nil {
			c.Unset = append(c.Unset, k)
		} else {
			c.Set[k] = *v
		}
	}
	_, err := keystore.NormalizeMetadata(c.Set)
	addValidation(errs, err)
	for _, k := range c.Unset {
		if err := keystore.ValidateMetaKey(k); err != nil {
			errs.add("metadata", err.Error())
		}
	}
	return c
}
