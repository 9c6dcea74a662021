// Package owner shares one watch database between processes: it elects the
// process that owns the bbolt file (and so runs the watch engine), and
// forwards every other process's calls and the owner's changes over a unix
// socket.
//
// bbolt holds an exclusive flock on its file for as long as it is open, so
// two `tlswatch serve` on one --db cannot both open it. The owner is elected
// with that very lock:
//
//   - Every process tries to open the database with a short lock timeout. The
//     one that gets it is the OWNER: it runs a watch.Engine on the file (the
//     scheduler, the state machine, the writer) and serves watch.Service to
//     the others over a unix socket next to the database (DBPath+".sock",
//     mode 0600; when that path is too long for sun_path, a short path under
//     os.TempDir() named by a hash of the database path).
//   - The others are FOLLOWERS: they implement watch.Service by calling the
//     owner (net/rpc, one generic call: a method name and its arguments as
//     JSON, see call.go), and hold one long-poll call open that streams the
//     owner's Changes, so their own subscribers are notified too. Only the
//     owner probes.
//   - The kernel drops the flock when the owner exits or dies (even SIGKILL),
//     and closes its socket. Followers see their connection drop, try the lock
//     at once, and one of them becomes the owner (within about a second; a
//     follower that cannot reach anyone retries every RetryInterval). The
//     others reconnect to it. Stale socket files are removed by the new owner,
//     which is safe because only the lock holder may own the socket.
//   - A call that races a handover is retried transparently until its ctx
//     ends: Add is idempotent per target, the rest are reads or idempotent
//     deletes. Nobody ever sees "database locked".
//   - The file stays the only truth: stage alerts are committed before they
//     are published, so a new owner never repeats one; what the alert layer
//     queues for them (Config.Alerts) commits in the same transaction, so a
//     crash never loses one either; and watches keep their phase (derived
//     from the id), so a handover does not bunch up probes.
package owner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// Config configures a Manager. Zero values are filled with the defaults
// documented per field.
type Config struct {
	// DBPath is the bbolt file (required). Its directory must exist.
	DBPath string
	// Engine configures the engine this process runs while it owns the
	// database (its Hook is set from Alerts).
	Engine watch.Config
	// Alerts, when set, delivers alerts while this process owns the
	// database: attached before the engine starts, so every commit queues
	// its alerts, and delivering until the ownership ends.
	Alerts watch.Alerter
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
	// PruneEvery is how often the owner prunes history past its retention
	// (Store.Retention). Default one hour; not at all without a scheduler.
	PruneEvery time.Duration
}

const (
	defaultLockTimeout   = 100 * time.Millisecond
	defaultRetryInterval = 500 * time.Millisecond
	defaultStartWait     = 10 * time.Second
)

func (c *Config) fill() {
	if c.Engine.Logger == nil {
		c.Engine.Logger = slog.New(slog.DiscardHandler)
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
	if c.SocketPath == "" {
		c.SocketPath = socketPath(c.DBPath)
	}
}

// Manager is a watch.Service on a database shared with other processes:
// the engine's while this process owns the file, the owner's through the
// socket otherwise.
type Manager struct {
	cfg Config
	log *slog.Logger
	hub *watch.Hub

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // role loop exited

	mu      sync.Mutex
	role    backend       // nil while looking for the owner
	changed chan struct{} // closed when role changes
	owner   bool
	lastErr error       // why the last attempt to own failed (not ErrLocked)
	squat   *squatError // set while the owner's socket is squatted (peer.go)

	own *owned // set while owner; touched only by Open and the role loop

	// Follower's position in the owner's change stream (role loop only).
	fEpoch string
	fNext  uint64
}

var _ watch.Service = (*Manager)(nil)

// Open starts a Manager on cfg.DBPath: the owner of the database if nobody
// holds it, else a follower of the process that does. It waits up to
// cfg.StartWait for a role; after that it returns anyway and calls wait for
// one (bounded by their ctx). Errors: a bad Config, or a database this
// process may lock but cannot open (permissions, corruption, a newer
// schema).
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.DBPath == "" {
		return nil, errors.New("watch: Config.DBPath is required")
	}
	cfg.fill()
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Engine.Logger,
		hub:     watch.NewHub(cfg.Engine.Logger),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())

	// First attempt in the caller's goroutine, so hard errors surface here.
	owned, err := m.tryOwn()
	if err != nil {
		m.cancel()
		return nil, err
	}
	go m.run(owned)
	if owned {
		return m, nil
	}
	if err := m.waitRole(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// waitRole waits up to StartWait for this follower to reach the owner.
func (m *Manager) waitRole(ctx context.Context) error {
	wait := time.NewTimer(m.cfg.StartWait)
	defer wait.Stop()
	for {
		m.mu.Lock()
		ok, ch, squat := m.role != nil, m.changed, m.squat
		m.mu.Unlock()
		if ok || squat != nil {
			return nil // a squatter is reported (setSquat); calls say so
		}
		select {
		case <-ch:
		case <-wait.C:
			m.log.Warn("watch: no database owner reachable yet; calls will wait for one", "db", m.cfg.DBPath)
			return nil
		case <-ctx.Done():
			return fmt.Errorf("watch: open %s: %w", m.cfg.DBPath, ctx.Err())
		}
	}
}

// Close stops the engine (waiting for running probes and the last commit)
// or disconnects from the owner, and releases the database so another
// process can take over.
func (m *Manager) Close() error {
	m.cancel()
	<-m.done
	m.hub.Close()
	return nil
}

// IsOwner reports whether this process currently owns the database (runs
// the scheduler). For diagnostics and tests.
func (m *Manager) IsOwner() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owner
}

// Role returns "owner", "follower" or "" (looking for the owner).
func (m *Manager) Role() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.owner:
		return "owner"
	case m.role != nil:
		return "follower"
	}
	return ""
}

// SocketPath is where the owner listens.
func (m *Manager) SocketPath() string { return m.cfg.SocketPath }

func (m *Manager) setRole(b backend, owner bool) {
	m.mu.Lock()
	m.role, m.owner = b, owner
	if b != nil {
		m.squat = nil
	}
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// --- watch.Service: one line per method (see call.go) ---

// Add creates or updates a watch and probes it once now.
func (m *Manager) Add(ctx context.Context, spec watch.Spec) (watch.Watch, error) {
	return call[watch.Watch](ctx, m, "Add", spec)
}

// Remove deletes a watch by id, or by target string when id is empty.
func (m *Manager) Remove(ctx context.Context, id, target string) (watch.Watch, error) {
	return call[watch.Watch](ctx, m, "Remove", id, target)
}

// Get returns one watch with its latest Report.
func (m *Manager) Get(ctx context.Context, id string) (watch.Watch, error) {
	return call[watch.Watch](ctx, m, "Get", id)
}

// List returns one page of the watches with their latest Report.
func (m *Manager) List(ctx context.Context, cursor string, limit int) (watch.WatchPage, error) {
	return call[watch.WatchPage](ctx, m, "List", cursor, limit)
}

// Expiring answers list_expiring, one page.
func (m *Manager) Expiring(ctx context.Context, withinDays *int, cursor string, limit int) (watch.ExpiringList, error) {
	return call[watch.ExpiringList](ctx, m, "Expiring", withinDays, cursor, limit)
}

// History answers get_history.
func (m *Manager) History(ctx context.Context, q watch.HistoryQuery) (watch.History, error) {
	return call[watch.History](ctx, m, "History", q)
}

// DatabaseUsage says what the database holds (asked of the owner).
func (m *Manager) DatabaseUsage(ctx context.Context) (store.Usage, error) {
	return call[store.Usage](ctx, m, "DatabaseUsage")
}

// CompactDatabase compacts the database online, in the owner.
func (m *Manager) CompactDatabase(ctx context.Context) (store.CompactResult, error) {
	return call[store.CompactResult](ctx, m, "CompactDatabase")
}

// Alerts returns a page of the alert feed.
func (m *Manager) Alerts(ctx context.Context, after string, limit int) (watch.AlertFeed, error) {
	return call[watch.AlertFeed](ctx, m, "Alerts", after, limit)
}

// Subscribe registers a Notifier. Changes committed by the owner reach the
// Notifiers of every process.
func (m *Manager) Subscribe(n watch.Notifier) (cancel func()) { return m.hub.Subscribe(n) }

// do runs fn against the current role, waiting for one and retrying across
// a handover until ctx ends.
func (m *Manager) do(ctx context.Context, fn func(b backend) error) error {
	for {
		m.mu.Lock()
		b, ch, lastErr, squat := m.role, m.changed, m.lastErr, m.squat
		m.mu.Unlock()
		if b == nil && squat != nil {
			// Waiting would hang until the caller's deadline: say why now.
			return fmt.Errorf("watch: no database owner reachable: %w", squat)
		}
		if b != nil {
			err := fn(b)
			var te errTransport
			if !errors.As(err, &te) {
				return err
			}
			if c, ok := b.(*rpcClient); ok {
				c.close() // make the follow loop notice now
			}
			m.log.Debug("watch: call raced a handover; retrying", "err", err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("watch: no database owner: %w (last error: %v)", ctx.Err(), lastErr)
			}
			return fmt.Errorf("watch: no database owner reachable: %w", ctx.Err())
		case <-m.ctx.Done():
			return watch.ErrClosed
		}
	}
}

// socketPath is DBPath+".sock", or a short path under os.TempDir() keyed by
// a hash of the absolute database path when that is too long for a unix
// socket address (104 bytes on macOS, 108 on Linux, including the NUL).
func socketPath(dbPath string) string {
	p := dbPath + ".sock"
	if len(p) < 100 {
		return p
	}
	abs, err := filepath.Abs(dbPath)
	if err != nil {
		abs = dbPath
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(os.TempDir(), "tlswatch-"+hex.EncodeToString(sum[:8])+".sock")
}

// jitter paces retries with jitter so followers do not stampede in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}
