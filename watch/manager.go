package watch

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

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// Two processes, one file.
//
// bbolt holds an exclusive flock on its file for as long as it is open, so
// two `tlswatch serve` on one --db cannot both open it. tlswatch elects an
// owner with that very lock:
//
//   - Every process tries to open the database with a short lock timeout. The
//     one that gets it is the OWNER: it loads the watches, runs the scheduler
//     and the state machine, writes the file, and serves the Service API to
//     the others over a unix socket next to the database (DBPath+".sock", mode
//     0600; when that path is too long for sun_path, a short path under
//     os.TempDir() named by a hash of the database path).
//   - The others are FOLLOWERS: they implement Service by RPC (net/rpc, gob
//     framing, JSON payloads so the records keep their exact JSON) to the
//     owner, and hold one long-poll call open that streams the owner's Events,
//     so their own MCP subscribers are notified too. Only the owner probes.
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
//     are published, so a new owner never repeats one; what the owner's
//     commit hook queues for them (alert outbox entries, Config.OnOwnerStart)
//     commits in the same transaction, so a crash never loses one either;
//     and watches keep their phase (derived from the id), so a handover does
//     not bunch up probes.
type Manager struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // role loop exited

	mu      sync.Mutex
	role    backend       // nil while looking for the owner
	changed chan struct{} // closed when role changes
	owner   bool
	lastErr error // why the last attempt to own failed (not ErrLocked)

	ring *eventRing // events for followers (owner only)
	own  *owned     // set while owner; touched only by Open and the role loop

	// Follower's position in the owner's event stream (role loop only).
	fEpoch string
	fNext  uint64

	subMu  sync.Mutex
	subs   map[uint64]*subscriber
	nextID uint64
}

var _ Service = (*Manager)(nil)

// ErrClosed is returned by calls on a closed Manager.
var ErrClosed = errors.New("watch: manager closed")

// errTransport marks failures of the path to the owner (connection dropped,
// owner shutting down): the call is retried once a role is re-established.
type errTransport struct{ err error }

func (e errTransport) Error() string { return "watch: owner unreachable: " + e.err.Error() }
func (e errTransport) Unwrap() error { return e.err }

var errEngineClosed = errTransport{errors.New("owner is shutting down")}

// backend is one role's implementation of the Service calls.
type backend interface {
	add(ctx context.Context, spec Spec) (Watch, error)
	remove(ctx context.Context, id, target string) (Watch, error)
	get(ctx context.Context, id string) (Watch, error)
	list(ctx context.Context) ([]Watch, error)
	expiring(ctx context.Context, days int) ([]Watch, error)
	history(ctx context.Context, id string, limit int) ([]probe.Report, error)
}

// Open starts a Manager on cfg.DBPath: the owner of the database if nobody
// holds it, else a follower of the process that does (see the design above).
// It waits up to cfg.StartWait for a role; after that it returns anyway and
// calls wait for one (bounded by their ctx). Errors: a bad Config, or a
// database this process may lock but cannot open (permissions, corruption,
// a newer schema).
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.DBPath == "" {
		return nil, errors.New("watch: Config.DBPath is required")
	}
	if cfg.Probe == nil {
		return nil, errors.New("watch: Config.Probe is required")
	}
	cfg.fill()
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		subs:    make(map[uint64]*subscriber),
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
	wait := time.NewTimer(cfg.StartWait)
	defer wait.Stop()
	for {
		m.mu.Lock()
		ok, ch := m.role != nil, m.changed
		m.mu.Unlock()
		if ok {
			return m, nil
		}
		select {
		case <-ch:
		case <-wait.C:
			m.log.Warn("watch: no database owner reachable yet; calls will wait for one", "db", cfg.DBPath)
			return m, nil
		case <-ctx.Done():
			m.Close()
			return nil, fmt.Errorf("watch: open %s: %w", cfg.DBPath, ctx.Err())
		}
	}
}

// Close stops the scheduler (waiting for running probes and the last commit)
// or disconnects from the owner, and releases the database so another process
// can take over.
func (m *Manager) Close() error {
	m.cancel()
	<-m.done
	m.subMu.Lock()
	for id, s := range m.subs {
		s.stop()
		delete(m.subs, id)
	}
	m.subMu.Unlock()
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
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// owned holds what the owner role needs to shut down.
type owned struct {
	db  *store.DB
	eng *engine
	srv *rpcServer

	hookCancel context.CancelFunc
	hookDone   chan struct{}
}

// tryOwn attempts to take the database. It returns (false, nil) when another
// process holds it, and an error only for failures that retrying will not
// fix on the first attempt.
func (m *Manager) tryOwn() (bool, error) {
	opts := m.cfg.Store
	opts.Timeout = m.cfg.LockTimeout
	db, err := store.Open(m.cfg.DBPath, opts)
	if errors.Is(err, store.ErrLocked) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("watch: %w", err)
	}
	m.ring = newEventRing(4096)
	var hook CommitHook
	if m.cfg.OnOwnerStart != nil {
		hook = m.ownerStart(db)
	}
	eng, err := openEngine(&m.cfg, db, hook, m.publish, m.publishListChanged)
	if err != nil {
		db.Close()
		return false, err
	}
	srv, err := listen(m.cfg.SocketPath, eng, m.ring, m.log)
	if err != nil {
		// Still the owner and fully usable here; other processes cannot
		// reach us and will keep waiting. Say so loudly.
		m.log.Error("watch: cannot serve other processes; they will wait for this one to exit", "socket", m.cfg.SocketPath, "err", err)
	}
	m.own = &owned{db: db, eng: eng, srv: srv}
	m.setRole(local{eng}, true)
	if m.cfg.OnOwner != nil {
		hctx, cancel := context.WithCancel(m.ctx)
		done := make(chan struct{})
		m.own.hookCancel, m.own.hookDone = cancel, done
		go func() {
			defer close(done)
			defer func() {
				if r := recover(); r != nil {
					m.log.Error("watch: owner hook panicked", "panic", r)
				}
			}()
			m.cfg.OnOwner(hctx, db)
		}()
	}
	m.log.Info("watch: this process owns the database and runs the scheduler", "db", m.cfg.DBPath, "socket", m.cfg.SocketPath)
	return true, nil
}

// ownerStart runs Config.OnOwnerStart; a panic there costs the hook, not
// the ownership.
func (m *Manager) ownerStart(db *store.DB) (hook CommitHook) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("watch: owner start hook panicked", "panic", r)
			hook = nil
		}
	}()
	return m.cfg.OnOwnerStart(db)
}

func (m *Manager) releaseOwn() {
	o := m.own
	if o == nil {
		return
	}
	m.own = nil
	m.setRole(nil, false)
	if o.hookCancel != nil {
		o.hookCancel()
		<-o.hookDone
	}
	// Followers first: closing the socket makes them try the lock, which
	// they get as soon as the file is closed below.
	if o.srv != nil {
		o.srv.close()
	}
	o.eng.close()
	if err := o.db.Close(); err != nil {
		m.log.Error("watch: close database", "err", err)
	}
	m.ring.close()
}

// run is the role loop: own, or follow until the owner goes away, then try
// to own again.
func (m *Manager) run(owned bool) {
	defer close(m.done)
	for {
		if owned {
			<-m.ctx.Done()
			m.releaseOwn()
			return
		}
		if m.ctx.Err() != nil {
			return
		}
		if cli, err := dial(m.cfg.SocketPath); err == nil {
			// Never followed anyone: skip the owner's old events.
			fresh := m.fEpoch == ""
			if err := m.follow(cli, fresh); err != nil {
				m.log.Debug("watch: lost the owner", "err", err)
			}
			m.setRole(nil, false)
			cli.close()
			if m.ctx.Err() != nil {
				return
			}
		}
		var err error
		owned, err = m.tryOwn()
		if err != nil {
			m.mu.Lock()
			repeated := m.lastErr != nil && m.lastErr.Error() == err.Error()
			m.lastErr = err
			m.mu.Unlock()
			if !repeated {
				m.log.Error("watch: cannot open the database", "err", err)
			}
		}
		if owned {
			continue
		}
		// Nobody reachable and the lock is held (the owner is starting or
		// stopping): pace the retries, with jitter so followers do not
		// stampede in step.
		d := m.cfg.RetryInterval/2 + time.Duration(rand.Int64N(int64(m.cfg.RetryInterval)))
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// follow serves as a follower through cli until the connection fails or the
// Manager closes; it streams the owner's events to local subscribers.
func (m *Manager) follow(cli *rpcClient, fresh bool) error {
	epoch, next, err := cli.head(m.ctx)
	if err != nil {
		return err
	}
	if !fresh {
		// A reconnect to the same owner resumes where it stopped; a new owner
		// delivers everything it published since it started, so nothing of
		// the handover window is lost.
		next = 0
		if epoch == m.fEpoch {
			next = m.fNext
		}
	}
	m.fEpoch, m.fNext = epoch, next
	m.setRole(cli, false)
	m.log.Info("watch: following the database owner", "socket", m.cfg.SocketPath)
	stop := context.AfterFunc(m.ctx, cli.close)
	defer stop()
	for {
		evs, ep, nx, err := cli.events(m.ctx, epoch, next)
		if err != nil {
			return err
		}
		if ep != epoch {
			return errTransport{errors.New("owner changed")}
		}
		next = nx
		m.fNext = nx
		for _, ev := range evs {
			m.fanout(ev)
		}
	}
}

// --- Service ---

// call runs fn against the current role, waiting for one and retrying
// across a handover until ctx ends.
func (m *Manager) call(ctx context.Context, fn func(b backend) error) error {
	for {
		m.mu.Lock()
		b, ch, lastErr := m.role, m.changed, m.lastErr
		m.mu.Unlock()
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
			return ErrClosed
		}
	}
}

// Add creates or updates (idempotent per target identity: host, port, sni,
// ip) a watch and probes it once now; the returned Watch carries that first
// Report and the state machine has run on it. Durable before it returns.
func (m *Manager) Add(ctx context.Context, spec Spec) (Watch, error) {
	// Validate here too, so a follower rejects bad input without a round trip.
	if _, err := ParseSchedule(spec.Schedule); err != nil {
		return Watch{}, err
	}
	if _, err := NormalizeThresholds(spec.Thresholds); err != nil {
		return Watch{}, err
	}
	if _, err := normTarget(spec.Target); err != nil {
		return Watch{}, err
	}
	var w Watch
	err := m.call(ctx, func(b backend) (err error) { w, err = b.add(ctx, spec); return })
	return w, err
}

// Remove deletes a watch by id, or by target string when id is empty.
func (m *Manager) Remove(ctx context.Context, id, target string) (Watch, error) {
	var w Watch
	err := m.call(ctx, func(b backend) (err error) { w, err = b.remove(ctx, id, target); return })
	return w, err
}

// Get returns one watch with its latest Report.
func (m *Manager) Get(ctx context.Context, id string) (Watch, error) {
	var w Watch
	err := m.call(ctx, func(b backend) (err error) { w, err = b.get(ctx, id); return })
	return w, err
}

// List returns all watches (id order) with their latest Report.
func (m *Manager) List(ctx context.Context) ([]Watch, error) {
	var ws []Watch
	err := m.call(ctx, func(b backend) (err error) { ws, err = b.list(ctx); return })
	return ws, err
}

// DefaultExpiringDays is list_expiring's default window.
const DefaultExpiringDays = 30

// Expiring returns the watches whose leaf expires within withinDays (whole
// days remaining <= withinDays; 0 or less means DefaultExpiringDays), is
// already expired, or whose state is down. Soonest not_after first; down
// watches that never presented a certificate come last. Served from the
// expiry index, not a scan.
func (m *Manager) Expiring(ctx context.Context, withinDays int) ([]Watch, error) {
	if withinDays <= 0 {
		withinDays = DefaultExpiringDays
	}
	if withinDays > 3650 {
		return nil, &probe.FieldError{Field: "within_days", Reason: fmt.Sprintf("%d out of range 1-3650", withinDays)}
	}
	var ws []Watch
	err := m.call(ctx, func(b backend) (err error) { ws, err = b.expiring(ctx, withinDays); return })
	return ws, err
}

// History limits.
const (
	DefaultHistoryLimit = 20
	MaxHistoryLimit     = store.HistoryKeep
)

// History returns the last limit Reports of one watch, newest first; limit
// 0 means DefaultHistoryLimit, more than MaxHistoryLimit is a FieldError.
func (m *Manager) History(ctx context.Context, id string, limit int) ([]probe.Report, error) {
	if limit == 0 {
		limit = DefaultHistoryLimit
	}
	if limit < 0 || limit > MaxHistoryLimit {
		return nil, &probe.FieldError{Field: "limit", Reason: fmt.Sprintf("%d out of range 1-%d", limit, MaxHistoryLimit)}
	}
	if id == "" {
		return nil, &probe.FieldError{Field: "id", Reason: "required"}
	}
	var rs []probe.Report
	err := m.call(ctx, func(b backend) (err error) { rs, err = b.history(ctx, id, limit); return })
	return rs, err
}

// --- notifications ---

// eventListChanged is the internal kind carrying Notifier.ListChanged
// through the event stream to followers.
const eventListChanged = "list_changed"

func (m *Manager) publish(ev Event) {
	m.ring.append(ev)
	m.fanout(ev)
}

func (m *Manager) publishListChanged() { m.publish(Event{Kind: eventListChanged}) }

// subscriberBuffer bounds the events queued per Notifier; a Notifier that
// falls that far behind loses events (logged) rather than stall the watcher.
const subscriberBuffer = 1024

type subscriber struct {
	n    Notifier
	ch   chan Event
	quit chan struct{}
	once sync.Once

	dropped    int       // events lost since the last warning (under subMu)
	lastWarned time.Time // (under subMu)
}

func (s *subscriber) stop() { s.once.Do(func() { close(s.quit) }) }

func (s *subscriber) loop(log *slog.Logger) {
	for {
		select {
		case <-s.quit:
			return
		case ev := <-s.ch:
			func() {
				defer func() {
					if r := recover(); r != nil {
						log.Error("watch: notifier panicked", "panic", r)
					}
				}()
				if ev.Kind == eventListChanged {
					s.n.ListChanged()
				} else {
					s.n.WatchChanged(ev)
				}
			}()
		}
	}
}

// Subscribe registers a Notifier. Each Notifier gets its own buffered queue
// and goroutine, so a slow one never blocks the scheduler or the others.
// Events published by the owner reach the Notifiers of every process.
func (m *Manager) Subscribe(n Notifier) (cancel func()) {
	s := &subscriber{n: n, ch: make(chan Event, subscriberBuffer), quit: make(chan struct{})}
	m.subMu.Lock()
	m.nextID++
	id := m.nextID
	m.subs[id] = s
	m.subMu.Unlock()
	go s.loop(m.log)
	return func() {
		m.subMu.Lock()
		delete(m.subs, id)
		m.subMu.Unlock()
		s.stop()
	}
}

func (m *Manager) fanout(ev Event) {
	m.subMu.Lock()
	defer m.subMu.Unlock()
	for _, s := range m.subs {
		select {
		case s.ch <- ev:
		default:
			// A burst (a network outage takes thousands of watches down at
			// once) must not turn into one log line per lost event.
			s.dropped++
			if time.Since(s.lastWarned) > 10*time.Second {
				m.log.Warn("watch: notifier queue full; dropping events", "dropped", s.dropped, "last_kind", ev.Kind, "last_id", ev.Watch.ID)
				s.dropped, s.lastWarned = 0, time.Now()
			}
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
