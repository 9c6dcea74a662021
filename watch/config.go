package watch

import (
	"context"
	"github.com/tlswatch/tlswatch/store"
	"log/slog"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// ProbeFunc runs one probe. It has the signature of probe.Run so that the
// real engine plugs in directly (wrap it to add Roots); tests may pass a
// fake. The watcher fills opts.Thresholds with the watch's thresholds,
// opts.Now with Config.Now() and opts.ClientCertName with the watch's
// client_cert (the ProbeFunc resolves it to the operator's certificate). An error means nothing could be attempted (the
// target is invalid); every server-side failure is a Report with status down.
type ProbeFunc func(ctx context.Context, t probe.Target, opts probe.Options) (probe.Report, error)

// CommitHook is called inside the bbolt write transaction that records an
// event's state (a stage marked as fired, a watch marked down), once per
// event, in the order the events were decided. It MUST only write through
// tx (never open a transaction of its own: that deadlocks), MUST be quick,
// and should return an error only when the transaction is doomed anyway:
// an error rolls back the whole group commit, probe results included.
type CommitHook func(tx *store.Tx, ev Event) error

// Config configures a Manager. Zero values are filled with the defaults
// documented per field.
type Config struct {
	// DBPath is the bbolt file (required). Its directory must exist.
	DBPath string
	// Probe runs one probe (required).
	Probe ProbeFunc
	// MinInterval is the operator floor for schedules (--min-interval); a
	// schedule firing more often is slowed to it. Zero: no floor beyond 1s.
	MinInterval time.Duration
	// Concurrency bounds the scheduled probes running at once. Default 32.
	Concurrency int
	// Logger receives diagnostics. Default: discard. Nothing goes to stdout.
	Logger *slog.Logger
	// Now is the clock for records and expiry arithmetic. Default time.Now.
	// (Timers use the real clock.)
	Now func() time.Time
	// NoScheduler keeps this process from probing on schedule even while it
	// owns the database (the CLI). It still serves other processes.
	NoScheduler bool
	// OnOwner, when set, runs in its own goroutine for each period during
	// which this process owns the database (and so runs the scheduler); its
	// ctx ends before the database is closed, and the period ends only once
	// it has returned. Work that must happen exactly once across processes
	// (alert delivery) hangs here.
	OnOwner func(ctx context.Context, db *store.DB)
	// OnOwnerStart, when set, runs each time this process becomes the owner,
	// after the database is open and before the scheduler starts (so before
	// any probe result commits). The CommitHook it returns, if not nil, is
	// called for every event inside the write transaction that commits the
	// event's state: what it writes there (alert outbox entries) is durable
	// exactly when the state change is. It runs before OnOwner of the same
	// period, in the same goroutine as the ownership change.
	OnOwnerStart func(db *store.DB) CommitHook
	// Store configures the database while this process owns it (scheduled
	// backups, damage reports); its Timeout is LockTimeout.
	Store store.Options
	// SocketPath overrides the owner's unix socket. Default DBPath+".sock",
	// or a short path under os.TempDir() when that is too long for sun_path.
	SocketPath string
	// LockTimeout is how long one attempt to take the database lock waits.
	// Default 100ms.
	LockTimeout time.Duration
	// RetryInterval paces a follower's attempts to reach or replace the
	// owner. Default 500ms.
	RetryInterval time.Duration
	// StartWait is how long Open waits to become owner or reach the owner
	// before returning anyway (calls then wait for a role). Default 10s.
	StartWait time.Duration
	// FlushInterval is the longest a scheduled probe result waits before its
	// group commit. Results that carry an alert are committed at once.
	// Default 1s.
	FlushInterval time.Duration
	// StartupSpread spreads the probes of watches that are overdue at start
	// (the process was down) over this window. Default 5m.
	StartupSpread time.Duration
	// MaxJitter bounds the deterministic offset added to cron-spec schedules
	// (@every schedules are spread over their whole interval). Default 5m.
	MaxJitter time.Duration
}

const (
	defaultConcurrency   = 32
	defaultLockTimeout   = 100 * time.Millisecond
	defaultRetryInterval = 500 * time.Millisecond
	defaultStartWait     = 10 * time.Second
	defaultFlush         = time.Second
	defaultStartupSpread = 5 * time.Minute
	defaultMaxJitter     = 5 * time.Minute
	defaultProbeTimeout  = 10 * time.Second
	maxProbeTimeout      = 60 * time.Second
)

func (c *Config) fill() {
	if c.Concurrency <= 0 {
		c.Concurrency = defaultConcurrency
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LockTimeout <= 0 {
		c.LockTimeout = defaultLockTimeout
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = defaultRetryInterval
	}
	if c.StartWait <= 0 {
		c.StartWait = defaultStartWait
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = defaultFlush
	}
	if c.StartupSpread <= 0 {
		c.StartupSpread = defaultStartupSpread
	}
	if c.MaxJitter <= 0 {
		c.MaxJitter = defaultMaxJitter
	}
	if c.SocketPath == "" {
		c.SocketPath = socketPath(c.DBPath)
	}
}
