package admin

import (
	"time"

	"github.com/keygate/keygate/keystore"
)

// Key is the stable JSON shape of a key, in the admin API and in the CLI's
// -o json output (see the README). Secret is set only in the one response
// that creates or rotates the key; PreviousExpiresAt only in a rotation's.
type Key struct {
	ID                string            `json:"id"`
	Secret            string            `json:"secret,omitempty"`
	AccountID         string            `json:"account_id"`
	Name              string            `json:"name"`
	Description       string            `json:"description"`
	DisplayPrefix     string            `json:"display_prefix"`
	Scopes            []string          `json:"scopes"`
	AllowedCIDRs      []string          `json:"allowed_cidrs"`
	Metadata          map[string]string `json:"metadata"`
	Limits            []string          `json:"limits"`
	Quota             *string           `json:"quota"`
	QuotaUsage        *QuotaUsage       `json:"quota_usage,omitempty"`
	Status            string            `json:"status"`
	CreatedAt         time.Time         `json:"created_at"`
	CreatedBy         string            `json:"created_by"`
	ExpiresAt         *time.Time        `json:"expires_at"`
	RevokedAt         *time.Time        `json:"revoked_at"`
	DisabledAt        *time.Time        `json:"disabled_at"`
	LastUsedAt        *time.Time        `json:"last_used_at"`
	RotatedFrom       *string           `json:"rotated_from"`
	RotatedTo         *string           `json:"rotated_to"`
	PreviousExpiresAt *time.Time        `json:"previous_expires_at,omitempty"`
}

// NewKey returns the JSON shape of k, its status judged at now.
func NewKey(k *keystore.Key, now time.Time) Key {
	out := Key{
		ID: k.ID, AccountID: k.AccountID, Name: k.Name, Description: k.Description, DisplayPrefix: k.DisplayPrefix,
		Scopes: k.Scopes, Status: k.StateAt(now).String(), CreatedAt: k.CreatedAt, CreatedBy: k.CreatedBy,
		ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, DisabledAt: k.DisabledAt, LastUsedAt: k.LastUsedAt,
		RotatedFrom: optional(k.RotatedFrom), RotatedTo: optional(k.RotatedTo),
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	out.Metadata = k.Metadata
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	out.Limits, out.Quota = k.Limits.Strings(), optional(k.Limits.Quota.String())
	out.AllowedCIDRs = make([]string, len(k.AllowedCIDRs))
	for i, p := range k.AllowedCIDRs {
		out.AllowedCIDRs[i] = p.String()
	}
	return out
}

// NewSecretKey is NewKey for the one response that shows the key's secret.
func NewSecretKey(k *keystore.Key, secret keystore.Secret, now time.Time) Key {
	out := NewKey(k, now)
	out.Secret = secret.Reveal()
	return out
}

// NewRotatedKey is NewSecretKey for a rotation: the successor with its
// secret, and when the predecessor's secret stops working.
func NewRotatedKey(r *keystore.Rotation, now time.Time) Key {
	out := NewSecretKey(r.New, r.Secret, now)
	out.PreviousExpiresAt = r.Old.ExpiresAt
	return out
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
