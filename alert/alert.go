package alert

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// Actions: what an alert means for the condition it is about.
const (
	// ActionTrigger opens a condition (the watch is down, its certificate is
	// in an expiry stage).
	ActionTrigger = "trigger"
	// ActionResolve closes a condition this channel was told about (the
	// watch is back up, the certificate was rotated).
	ActionResolve = "resolve"
	// ActionNotify is everything else (a status change while up, a rotation
	// nobody was alerted about).
	ActionNotify = "notify"
)

// Conditions an alert can open or close. The PagerDuty dedup_key is
// "tlswatch/<watch id>/<condition>": stable per watch and condition, so
// repeated triggers update one incident and the resolve closes it.
const (
	ConditionDown   = "down"
	ConditionExpiry = "expiry"
)

// Alert is one alert for one channel: what the outbox stores and, as JSON,
// exactly the body the generic webhook receives. Field names are a contract
// for receivers.
type Alert struct {
	// ID is the delivery id (also the X-Tlswatch-Delivery header and the
	// email Message-ID): the same on every retry of this delivery, so a
	// receiver can drop a duplicate from the at-least-once window.
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`   // status_changed | stage_crossed | rotated | mcp_tools_changed
	Level         string     `json:"level"`  // info | warning | critical
	Action        string     `json:"action"` // trigger | resolve | notify
	Condition     string     `json:"condition,omitempty"`
	DedupKey      string     `json:"dedup_key,omitempty"`
	Message       string     `json:"message"`
	WatchID       string     `json:"watch_id"`
	Target        string     `json:"target"` // host:port
	State         string     `json:"state"`  // pending | up | down
	Status        string     `json:"status,omitempty"`
	ExpiryStage   string     `json:"expiry_stage,omitempty"`
	DaysRemaining *int       `json:"days_remaining,omitempty"`
	NotAfter      *time.Time `json:"not_after,omitempty"`
	Fingerprint   string     `json:"fingerprint,omitempty"`
	Findings      []Finding  `json:"findings,omitempty"`
	Timestamp     time.Time  `json:"timestamp"`
	// ToolsChanged says what changed in an MCP-level watch's tool list.
	ToolsChanged *probe.ToolsChange `json:"tools_changed,omitempty"`
}

// Finding is a finding of the watch's latest report.
type Finding struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// maxFindings bounds what one alert carries: enough to act on, small enough
// for a Slack message and the outbox.
const maxFindings = 10

// maxText bounds free text taken from a report. The text can come from a
// hostile server (certificate subjects end up in messages).
const maxText = 1000

// newAlert captures the facts of an event of watch w; Action, Condition and
// DedupKey are set per channel by the dispatcher.
func newAlert(w watch.Watch, ev watch.Event, now time.Time) Alert {
	a := Alert{
		Kind:      ev.Kind,
		Level:     ev.Level,
		Message:   truncate(ev.Message, maxText),
		WatchID:   w.ID,
		Target:    w.Target.String(),
		State:     w.State,
		Timestamp: now.UTC(),
		// Tool names come from the server: bounded like any text from it.
		ToolsChanged: boundedChange(ev.Tools),
	}
	if a.Level == "" {
		a.Level = watch.LevelInfo
	}
	if r := w.LastReport; r != nil {
		a.Status = string(r.Status)
		a.ExpiryStage = string(r.ExpiryStage)
		if l := r.Leaf; l != nil {
			days := l.DaysRemaining
			na := l.NotAfter.UTC()
			a.DaysRemaining, a.NotAfter, a.Fingerprint = &days, &na, l.SHA256
		}
		for _, f := range r.Findings {
			if len(a.Findings) == maxFindings {
				break
			}
			a.Findings = append(a.Findings, Finding{Code: f.Code, Severity: string(f.Severity), Message: truncate(f.Message, 300)})
		}
	}
	return a
}

// maxToolNames bounds the names an alert lists per kind of change.
const maxToolNames = 50

// boundedChange copies a tool change with at most maxToolNames names per
// list, each bounded (the message says how many there were).
func boundedChange(c *probe.ToolsChange) *probe.ToolsChange {
	if c == nil {
		return nil
	}
	clip := func(names []string) []string {
		var out []string
		for _, n := range names[:min(len(names), maxToolNames)] {
			out = append(out, truncate(n, 200))
		}
		return out
	}
	return &probe.ToolsChange{Added: clip(c.Added), Removed: clip(c.Removed), Changed: clip(c.Changed)}
}

// newDeliveryID is random rather than derived from the outbox sequence, which
// restarts at 1 in a new database file and would collide at the receiver.
func newDeliveryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return "d_" + hex.EncodeToString(b[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func dedupKey(watchID, condition string) string {
	return "tlswatch/" + watchID + "/" + condition
}
