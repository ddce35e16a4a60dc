package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Sign returns the webhook-signature header of a delivery: "v1,<base64 of
// HMAC-SHA256(id.timestamp.body)>" for each secret, separated by spaces.
func Sign(secrets []keystore.SigningSecret, id string, timestamp time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("webhook: no secret to sign with")
	}
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, err := s.Key()
		if err != nil {
			return "", err
		}
		sigs = append(sigs, "v1,"+signature(key, id, timestamp.Unix(), body))
	}
	return strings.Join(sigs, " "), nil
}

func signature(key []byte, id string, unix int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(unix, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrMissingHeaders = errors.New("webhook: the webhook-id, webhook-timestamp and webhook-signature headers are required")
	ErrTimestamp      = errors.New("webhook: the timestamp is outside the tolerance")
	ErrNoSignature    = errors.New("webhook: no signature matches")
)

// Verify checks a delivery as a receiver does: its timestamp within
// tolerance of now, and one of its v1 signatures made with secret. It is
// here for receivers written in Go and for tests.
func Verify(secret keystore.SigningSecret, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrMissingHeaders
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	key, err := secret.Key()
	if err != nil {
		return err
	}
	want := []byte(signature(key, id, unix, body))
	for _, s := range strings.Split(sigs, " ") {
		version, sig, ok := strings.Cut(s, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrNoSignature
}
