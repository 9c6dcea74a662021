package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// pdEvent is an Events API v2 event.
type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"` // trigger | resolve
	DedupKey    string     `json:"dedup_key"`
	Payload     *pdPayload `json:"payload,omitempty"` // trigger only
	Client      string     `json:"client,omitempty"`
}

type pdPayload struct {
	Summary       string `json:"summary"`
	Source        string `json:"source"`
	Severity      string `json:"severity"` // critical | error | warning | info
	Timestamp     string `json:"timestamp,omitempty"`
	Component     string `json:"component,omitempty"`
	Group         string `json:"group,omitempty"`
	Class         string `json:"class,omitempty"`
	CustomDetails *Alert `json:"custom_details,omitempty"`
}

type pagerDutySender struct {
	url        string
	routingKey string
	client     *http.Client
	userAgent  string
}

// send posts a trigger or a resolve. The dispatcher only queues triggers and
// resolves for PagerDuty (notify-only alerts are not incidents). Repeating
// either is harmless: PagerDuty folds a trigger into the open incident with
// the same dedup_key and ignores a resolve of a closed one, which is what
// makes the at-least-once window safe here.
func (s *pagerDutySender) send(ctx context.Context, a *Alert) error {
	ev := pdEvent{RoutingKey: s.routingKey, EventAction: a.Action, DedupKey: a.DedupKey, Client: "tlswatch"}
	switch a.Action {
	case ActionTrigger:
		ev.Payload = &pdPayload{
			Summary:       truncate(headline(a)+": "+oneLine(a.Message), 1024),
			Source:        a.Target,
			Severity:      a.Level,
			Timestamp:     a.Timestamp.Format("2006-01-02T15:04:05.000Z07:00"),
			Component:     a.Target,
			Group:         "tlswatch",
			Class:         "tls_" + a.Condition,
			CustomDetails: a,
		}
	case ActionResolve:
	default:
		return permanent(fmt.Errorf("pagerduty: nothing to send for action %q", a.Action))
	}
	if ev.DedupKey == "" {
		return permanent(fmt.Errorf("pagerduty: %s without dedup_key", a.Action))
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return permanent(fmt.Errorf("encode pagerduty event: %w", err))
	}
	// 202 accepted; 400 invalid event (permanent); 429 and 5xx retried.
	return postJSON(ctx, s.client, s.url, body, nil, s.userAgent)
}
