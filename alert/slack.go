package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/tlswatch/tlswatch/watch"
)

// slackMessage is the incoming-webhook payload: text is the notification
// and fallback; blocks lay it out.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks,omitempty"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type slackSender struct {
	url       string
	client    *http.Client
	userAgent string
}

func (s *slackSender) send(ctx context.Context, a *Alert) error {
	body, err := json.Marshal(slackPayload(a))
	if err != nil {
		return permanent(fmt.Errorf("encode slack payload: %w", err))
	}
	// Slack answers 400/403/404/410 for a bad payload, a revoked or
	// archived hook: permanent; 429 and 5xx are retried.
	return postJSON(ctx, s.client, s.url, body, nil, s.userAgent)
}

func slackPayload(a *Alert) slackMessage {
	head := headline(a)
	text := fmt.Sprintf("%s *%s* %s", slackIcon(a), slackEscape(head), slackEscape(a.Message))
	var facts []string
	facts = append(facts, "target `"+slackEscape(a.Target)+"`", "watch `"+slackEscape(a.WatchID)+"`")
	if a.State != "" {
		facts = append(facts, "state "+slackEscape(a.State))
	}
	if a.ExpiryStage != "" && a.ExpiryStage != "none" {
		facts = append(facts, "expiry stage "+slackEscape(a.ExpiryStage))
	}
	if a.DaysRemaining != nil {
		facts = append(facts, fmt.Sprintf("%d days left", *a.DaysRemaining))
	}
	var findings []string
	for _, f := range a.Findings {
		if f.Severity == watch.LevelInfo {
			continue
		}
		findings = append(findings, fmt.Sprintf("• `%s` (%s) %s", slackEscape(f.Code), slackEscape(f.Severity), slackEscape(f.Message)))
	}
	blocks := []slackBlock{{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(text, 2900)}}}
	if len(findings) > 0 {
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(strings.Join(findings, "\n"), 2900)}})
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: truncate(strings.Join(facts, " · "), 2900)}}})
	return slackMessage{Text: truncate(text, 3000), Blocks: blocks}
}

func slackIcon(a *Alert) string {
	if a.Action == ActionResolve {
		return ":large_green_circle:"
	}
	switch a.Level {
	case watch.LevelCritical:
		return ":red_circle:"
	case watch.LevelWarning:
		return ":large_orange_circle:"
	}
	return ":large_blue_circle:"
}

// slackEscape applies Slack's three escapes. Alert text can carry what a
// hostile server put in its certificate; unescaped, "<!channel>" would ping
// everyone and "<https://evil|click>" would render as a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// headline is the short form used by Slack and email subjects.
func headline(a *Alert) string {
	lvl := strings.ToUpper(a.Level)
	switch {
	case a.Action == ActionResolve && a.Condition == ConditionDown:
		return "RESOLVED: " + a.Target + " is back up"
	case a.Action == ActionResolve && a.Condition == ConditionExpiry:
		return "RESOLVED: " + a.Target + " has a new certificate"
	case a.Condition == ConditionDown:
		return lvl + ": " + a.Target + " is down"
	case a.Condition == ConditionExpiry:
		stage := a.ExpiryStage
		if stage == "expired" {
			return lvl + ": " + a.Target + " certificate expired"
		}
		return lvl + ": " + a.Target + " certificate expires within " + stage
	case a.Kind == watch.EventRotated:
		return lvl + ": " + a.Target + " certificate rotated"
	case a.Kind == watch.EventToolsChanged:
		return lvl + ": " + a.Target + " MCP tools changed"
	}
	return lvl + ": " + a.Target + " status " + a.Status
}
