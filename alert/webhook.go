package alert

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
)

// Headers of the generic webhook.
const (
	// HeaderSignature is "sha256=" + hex(HMAC-SHA256(secret, body)), present
	// when the channel has a secret. Receivers compare it in constant time
	// over the raw body bytes.
	HeaderSignature = "X-Tlswatch-Signature"
	// HeaderDelivery is the delivery id (Alert.ID), the same on every retry:
	// receivers drop a repeat to get exactly-once processing.
	HeaderDelivery = "X-Tlswatch-Delivery"
	// HeaderEvent is the event kind, for routing without parsing the body.
	HeaderEvent = "X-Tlswatch-Event"
)

// Sign returns the HeaderSignature value for body: receivers can use it to
// verify (with hmac.Equal), and tests do.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

type webhookSender struct {
	url       string
	secret    []byte
	client    *http.Client
	userAgent string
}

func (s *webhookSender) send(ctx context.Context, a *Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return permanent(fmt.Errorf("encode webhook body: %w", err))
	}
	h := http.Header{}
	h.Set(HeaderDelivery, a.ID)
	h.Set(HeaderEvent, a.Kind)
	if len(s.secret) > 0 {
		h.Set(HeaderSignature, Sign(s.secret, body))
	}
	return postJSON(ctx, s.client, s.url, body, h, s.userAgent)
}
