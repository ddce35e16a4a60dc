package admin

import (
	"encoding/json"
	"net/http"

	"github.com/keygate/keygate/keystore"
)

// limitsPatch reads the limits members of a merge patch: "limits" (an
// array replaces the key's rates; null or [] removes them) and "quota" (a
// string replaces it; null or "" removes it). Nil when the patch has
// neither.
func limitsPatch(members map[string]json.RawMessage, errs *fieldErrors) *keystore.LimitsChange {
	var c keystore.LimitsChange
	if _, ok := members["limits"]; ok {
		c.Rates = &[]string{}
		decodeMember(members, "limits", c.Rates, errs, `an array of limits like "100/s" or "50000/d,burst=500", or null`)
		if !errs.has("limits") {
			_, err := keystore.ParseLimits(*c.Rates, "")
			addValidation(errs, err)
		}
	}
	if _, ok := members["quota"]; ok {
		c.Quota = new(string)
		decodeMember(members, "quota", c.Quota, errs, `a quota like "1000000/month", or null`)
		if !errs.has("quota") && *c.Quota != "" {
			_, err := keystore.ParseQuota(*c.Quota)
			addValidation(errs, err)
		}
	}
	if c.Rates == nil && c.Quota == nil {
		return nil
	}
	return &c
}

// keyWithQuota is k's JSON shape with its quota's usage, when it has a
// quota (the usage is left out if the store cannot say).
func (s *Server) keyWithQuota(r *http.Request, k *keystore.Key) Key {
	now := s.now()
	out := NewKey(k, now)
	if k.Limits.Quota.Period != keystore.NoQuota {
		if used, err := s.store.QuotaUsed(r.Context(), k, now); err == nil {
			out.QuotaUsage = NewQuotaUsage(k, used, now)
		}
	}
	return out
}
