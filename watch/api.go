// Package watch schedules probes of watched endpoints (robfig/cron/v3),
// keeps each watch's state machine (up/down, expiry stages, rotation) and
// sends notifications out through the Notifier interface. It persists through
// package store and never speaks JSON-RPC itself.
package watch

import (
	"context"
	"errors"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// Watch states (DESIGN.md).
const (
	StatePending = "pending"
	StateUp      = "up"
	StateDown    = "down"
)

// Defaults of DESIGN.md.
const (
	DefaultSchedule         = "@every 6h"
	DefaultFailureThreshold = 3
)

// DefaultThresholds are the expiry stages in days.
var DefaultThresholds = []int{30, 14, 7, 1}

// Watch is the record shown per watch by watch_endpoint, list_watches,
// list_expiring and tlswatch://watches/{id}. JSON names are the contract.
type Watch struct {
	ID                  string           `json:"id"`
	Target              probe.TargetInfo `json:"target"`
	Schedule            string           `json:"schedule"`
	ThresholdsDays      []int            `json:"thresholds_days"`
	State               string           `json:"state"`
	ConsecutiveFailures int              `json:"consecutive_failures"`
	LastCheckedAt       *time.Time       `json:"last_checked_at,omitempty"`
	LastReport          *probe.Report    `json:"last_report,omitempty"`
	CreatedAt           time.Time        `json:"created_at"`

	// Additive fields.
	FailureThreshold int    `json:"failure_threshold"`
	TimeoutMS        int    `json:"timeout_ms,omitempty"`
	Path             string `json:"path,omitempty"`
	ClientCert       string `json:"client_cert,omitempty"`
	// Scheme is the STARTTLS scheme of the target ("smtp", ...); empty for
	// direct TLS. Part of the watch's identity.
	Scheme string `json:"scheme,omitempty"`
}

// Spec is what watch_endpoint (and `tlswatch watch add`) asks for. The zero
// values of Schedule, Thresholds and FailureThreshold mean the defaults.
type Spec struct {
	Target           probe.Target
	Schedule         string
	Thresholds       []int
	FailureThreshold int
	ClientCert       string
}

// Event kinds a Notifier receives.
const (
	EventStatusChanged = "status_changed" // watch went up or down, or last_report.status changed
	EventStageCrossed  = "stage_crossed"  // expiry stage crossed (fires once per certificate)
	EventRotated       = "rotated"        // leaf fingerprint changed
)

// Event is one change worth telling subscribers about.
type Event struct {
	Kind    string
	Level   string // "info", "warning" or "critical": the MCP log level to use
	Message string
	Watch   Watch
}

// Notifier receives what the watcher decides to tell. Implementations MUST be
// safe for concurrent use and MUST NOT block for long (buffer or drop).
// The MCP implementation lives in package tools.
type Notifier interface {
	// WatchChanged: the watch's resource changed in a way that matters
	// (status change, stage crossing, rotation). One call per event.
	WatchChanged(ev Event)
	// ListChanged: a watch was added or removed.
	ListChanged()
}

// Sentinel errors.
var (
	ErrNotFound = errors.New("watch not found")
)

// Service is what tools and the CLI use. Methods MUST be safe for concurrent
// use, honour ctx, and return *probe.FieldError for bad input.
type Service interface {
	// Add creates or updates (idempotent per target) a watch and probes it
	// once now; the returned Watch carries that first Report. The write is
	// durable before Add returns.
	Add(ctx context.Context, spec Spec) (Watch, error)
	// Remove deletes a watch by id, or by target string when id is empty.
	Remove(ctx context.Context, id, target string) (Watch, error)
	Get(ctx context.Context, id string) (Watch, error)
	List(ctx context.Context) ([]Watch, error)
	// Expiring returns watches whose leaf expires within days, already
	// expired, or down; soonest expiry first.
	Expiring(ctx context.Context, withinDays int) ([]Watch, error)
	// History returns the last limit Reports of one watch, newest first.
	History(ctx context.Context, id string, limit int) ([]probe.Report, error)
	// Subscribe registers a Notifier; the returned func removes it.
	Subscribe(n Notifier) (cancel func())
}
