// Package watch keeps watched endpoints: it validates and defaults what a
// watch is made of, schedules its probes on a min-heap of fire times (cron
// specs parsed by robfig/cron/v3), runs the state machine (up/down, expiry
// stages, rotation), commits results through one group-committing writer,
// and tells Notifiers what changed. It persists through the Store interface
// (package store implements it) and never speaks JSON-RPC itself; sharing
// one database between processes is package watch/owner's job.
package watch

import (
	"context"
	"errors"
	"time"

	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// Watch states (DESIGN.md).
const (
	StatePending = "pending"
	StateUp      = "up"
	StateDown    = "down"
)

// Event levels (MCP log levels): probe's severities.
const (
	LevelInfo     = string(probe.SeverityInfo)
	LevelWarning  = string(probe.SeverityWarning)
	LevelCritical = string(probe.SeverityCritical)
)

// Watch is the record shown per watch by watch_endpoint, list_watches,
// list_expiring and tlswatch://watches/{id}. JSON names are the contract.
type Watch struct {
	ID                  string            `json:"id"`
	Target              probe.TargetInfo  `json:"target"`
	Schedule            string            `json:"schedule"`
	ThresholdsDays      []probe.Threshold `json:"thresholds_days"` // days as numbers, others as "36h", "20%"
	State               string            `json:"state"`
	ConsecutiveFailures int               `json:"consecutive_failures"`
	LastCheckedAt       *time.Time        `json:"last_checked_at,omitempty"`
	LastReport          *probe.Report     `json:"last_report,omitempty"`
	CreatedAt           time.Time         `json:"created_at"`

	// Additive fields: how the watch is probed.
	FailureThreshold int    `json:"failure_threshold"`
	TimeoutMS        int    `json:"timeout_ms,omitempty"`
	Path             string `json:"path,omitempty"`
	ClientCert       string `json:"client_cert,omitempty"`
	// Scheme is the STARTTLS scheme of the target ("smtp", ...); empty for
	// direct TLS. Part of the watch's identity.
	Scheme string `json:"scheme,omitempty"`
	// CARoots summarises the extra trust roots the watch carries (never
	// their PEM).
	CARoots []RootInfo `json:"ca_roots,omitempty"`
	// OutboundPolicy is the policy of the process that created the watch,
	// when it was stricter than the default; every probe applies it.
	OutboundPolicy *PolicyInfo `json:"outbound_policy,omitempty"`
	// MCPLevel: the watch also checks the MCP protocol level.
	MCPLevel  bool   `json:"mcp_level,omitempty"`
	TokenName string `json:"token_name,omitempty"`
	CreatedBy string `json:"created_by,omitempty"`
	ProbedBy  string `json:"probed_by,omitempty"`
	// MCP is what the latest MCP-level probe that reached the server saw
	// (the tool list itself stays with the record, for the next probe).
	MCP *MCPInfo `json:"mcp,omitempty"`
	// LifetimeLeftPct is the share of the leaf's lifetime that was left at
	// the latest probe, in percent (0 once expired): 9 days left of 90
	// and 20 hours left of 2 days are both worth a look.
	LifetimeLeftPct *float64 `json:"lifetime_left_pct,omitempty"`
	// MCPStats are the uptime and MCP latency percentiles of an MCP-level
	// watch over its recent probes.
	MCPStats *MCPStats `json:"mcp_stats,omitempty"`
	// StaleSince is set when the record comes from a cluster node's copy
	// that may be behind (etcd unreachable): the last time it was known
	// current.
	StaleSince *time.Time `json:"stale_since,omitempty"`
	// Uptime (the share of probes that were not down, 0 to 1) and the
	// handshake latency (p50, p95, in ms, within 1%) over the last 24 hours
	// and 30 days: whole UTC hours and days, the current one included.
	// From the history's aggregates, refreshed every few minutes; absent
	// when the window has no probe (latency: no handshake).
	Uptime24h       *float64 `json:"uptime_24h,omitempty"`
	Uptime30d       *float64 `json:"uptime_30d,omitempty"`
	LatencyP50MS24h *float64 `json:"latency_ms_p50_24h,omitempty"`
	LatencyP95MS24h *float64 `json:"latency_ms_p95_24h,omitempty"`
	LatencyP50MS30d *float64 `json:"latency_ms_p50_30d,omitempty"`
	LatencyP95MS30d *float64 `json:"latency_ms_p95_30d,omitempty"`
}

// RootInfo names one extra trust root of a watch.
type RootInfo struct {
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
}

// PolicyInfo is an outbound policy as a watch shows it.
type PolicyInfo struct {
	DenyPrivate bool     `json:"deny_private,omitempty"`
	AllowCIDRs  []string `json:"allow_cidrs,omitempty"`
	DenyCIDRs   []string `json:"deny_cidrs,omitempty"`
}

// MCPInfo is the MCP server behind an MCP-level watch.
type MCPInfo = probe.MCPInfo

// MCPStats summarise the recent probes of an MCP-level watch (the last
// MCPRecentKeep): how many, since when, the share that succeeded (TLS and
// MCP both answered), and the MCP latency percentiles of those that did.
type MCPStats struct {
	Probes int       `json:"probes"`
	Since  time.Time `json:"since"`
	// Uptime is the share of those probes that succeeded, 0 to 1.
	Uptime float64 `json:"uptime"`
	// LatencyMSP50 and LatencyMSP95 are nearest-rank percentiles of the
	// initialize round trip of the successful probes; absent when none
	// succeeded.
	LatencyMSP50 *float64 `json:"latency_ms_p50,omitempty"`
	LatencyMSP95 *float64 `json:"latency_ms_p95,omitempty"`
}

// Spec is what watch_endpoint (and `tlswatch watch add`) asks for, as the
// caller got it: Add validates and defaults every field (zero values mean
// the defaults) and reports a bad one as a *probe.FieldError naming it.
type Spec struct {
	// Target, IP, SNI and TimeoutMS are the target fields of DESIGN.md.
	Target    string
	IP        string
	SNI       string
	TimeoutMS int

	Schedule string
	// Thresholds as given: numbers (days) or strings ("30", "7d", "36h",
	// "20%"); NormalizeThresholds says what is accepted.
	Thresholds       []any
	FailureThreshold int

	// ClientCert names the client certificate presented on every probe;
	// ClientCertFile and ClientKeyFile say where the caller's process loaded
	// it from, so that another process can load it too (paths, never keys).
	ClientCert     string
	ClientCertFile string
	ClientKeyFile  string
	// CAPEM holds extra trust roots (PEM CERTIFICATE blocks) stored with
	// the watch and added to the prober's trust store.
	CAPEM string
	// Policy is the outbound policy of the caller's process
	// (--deny-private, --allow-cidr, --deny-cidr).
	Policy netpolicy.Config
	// MCP makes the watch an MCP-level watch; TokenName names an operator
	// token for a protected MCP endpoint.
	MCP       bool
	TokenName string
	// CreatedBy is the caller's identity (an OAuth subject).
	CreatedBy string
	// Session is the caller's MCP session, for a caller without
	// CreatedBy: the watches it creates count against
	// Config.MaxWatchesPerSubject as that session's. Not stored.
	Session string
}

// Event kinds a Notifier receives.
const (
	EventStatusChanged = "status_changed" // watch went up or down, or last_report.status changed
	EventStageCrossed  = "stage_crossed"  // expiry stage crossed (fires once per certificate)
	EventRotated       = "rotated"        // leaf fingerprint changed
	EventWatchAdded    = "watch_added"    // a watch was created
	EventWatchRemoved  = "watch_removed"  // a watch was removed
	// EventToolsChanged: an MCP-level watch's tool list changed (the
	// finding code of the same name is on that probe's Report).
	EventToolsChanged = probe.CodeMCPToolsChanged
)

// Event is one thing worth telling about a watch.
type Event struct {
	Kind    string
	Level   string // "info", "warning" or "critical": the MCP log level to use
	Message string
	// Tools says what was added, removed or changed (EventToolsChanged).
	Tools *probe.ToolsChange `json:",omitempty"`
}

// Change is everything one committed write did to one watch: the events
// decided on one probe result, or one Add or Remove, with the watch as it
// is after the write.
type Change struct {
	Watch  Watch
	Events []Event
}

// Has reports whether the change carries an event of that kind.
func (c Change) Has(kind string) bool {
	for _, e := range c.Events {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// ListChanged reports whether the change added or removed the watch.
func (c Change) ListChanged() bool { return c.Has(EventWatchAdded) || c.Has(EventWatchRemoved) }

// Notifier receives what the watcher decides to tell, once per committed
// Change. Implementations MUST be safe for concurrent use and MUST NOT block
// for long (buffer or drop). The MCP implementation lives in package tools.
type Notifier interface {
	Changed(c Change)
}

// WatchPage is one page of List.
type WatchPage struct {
	Watches []Watch `json:"watches"`
	// NextCursor continues the list after this page; empty on the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

// ExpiringList is what Expiring returns: the window used and one page of
// the watches.
type ExpiringList struct {
	WithinDays int     `json:"within_days"`
	Watches    []Watch `json:"watches"`
	// StaleSince: see Watch.StaleSince.
	StaleSince *time.Time `json:"stale_since,omitempty"`
	// NextCursor continues the list after this page; empty on the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

// AlertEntry is one event of the durable alert feed.
type AlertEntry struct {
	// ID is this entry's cursor: Alerts(after=ID) continues after it.
	ID string `json:"id"`
	store.FeedEntry
}

// AlertFeed is one page of the alert feed.
type AlertFeed struct {
	Alerts []AlertEntry `json:"alerts"`
	// Next is the cursor to pass as after for the next page (the given
	// cursor when there is nothing new).
	Next string `json:"next"`
	// Missed counts entries after the cursor that the feed no longer holds
	// (it keeps the newest store.FeedKeep).
	Missed int `json:"missed,omitempty"`
}

// Errors.
var (
	ErrNotFound = errors.New("watch not found")
	// ErrClosed is returned by calls on a closed service.
	ErrClosed = errors.New("watch: closed")
)

// Service is what tools and the CLI use. Methods MUST be safe for concurrent
// use, honour ctx, return *probe.FieldError for bad input and wrap
// ErrNotFound for an unknown watch. Every method but Subscribe takes a
// context first and returns one value and an error, or only an error: that
// is what lets package watch/owner forward any of them to another process
// through one generic path.
type Service interface {
	// Add creates or updates (idempotent per target identity: host, port,
	// sni, ip, STARTTLS scheme) a watch and probes it once now; the
	// returned Watch carries that first Report. Durable before it returns.
	Add(ctx context.Context, spec Spec) (Watch, error)
	// Remove deletes a watch by id, or by target string when id is empty.
	Remove(ctx context.Context, id, target string) (Watch, error)
	// Get returns one watch with its latest Report.
	Get(ctx context.Context, id string) (Watch, error)
	// List returns one page of the watches (id order) with their latest
	// Report: up to limit (0 means DefaultPageLimit) after cursor ("" from
	// the first; else a NextCursor of List).
	List(ctx context.Context, cursor string, limit int) (WatchPage, error)
	// Expiring returns one page (cursor and limit as List's) of the
	// watches whose leaf expires within withinDays (whole days remaining at
	// most that; nil means DefaultExpiringDays, 0 only what is at or past
	// expiry), is already expired, or that are down; soonest expiry first.
	Expiring(ctx context.Context, withinDays *int, cursor string, limit int) (ExpiringList, error)
	// History answers get_history: one watch's samples or aggregates over
	// a range, with the Reports stored at its changes (see HistoryQuery).
	History(ctx context.Context, q HistoryQuery) (History, error)
	// Alerts returns up to limit alert feed entries after the cursor (""
	// means from the oldest kept; limit 0 means DefaultAlertsLimit).
	Alerts(ctx context.Context, after string, limit int) (AlertFeed, error)
	// DatabaseUsage says what the database holds (tlswatch db stats).
	DatabaseUsage(ctx context.Context) (store.Usage, error)
	// CompactDatabase gives back the free pages of the database file by an
	// online copy and swap, done by the process that owns the file.
	CompactDatabase(ctx context.Context) (store.CompactResult, error)
	// Subscribe registers a Notifier; the returned func removes it.
	Subscribe(n Notifier) (cancel func())
}
