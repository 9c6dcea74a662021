package watch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// Config configures an Engine. Zero values are filled with the defaults
// documented per field.
type Config struct {
	// Prober builds and runs every probe of a watch. Default: the system
	// roots, the default outbound policy, probe.Run.
	Prober *Prober
	// MinInterval is the operator floor for schedules (--min-interval); a
	// schedule firing more often is slowed to it. Zero: no floor beyond 1s.
	MinInterval time.Duration
	// Concurrency bounds the scheduled probes running at once. Default 32.
	Concurrency int
	// Logger receives diagnostics. Default: discard. Nothing goes to stdout.
	Logger *slog.Logger
	// Clock is the one source of time. Default RealClock().
	Clock Clock
	// NoScheduler keeps the engine from probing on schedule (the CLI).
	NoScheduler bool
	// FlushInterval is the longest a scheduled probe result waits before its
	// group commit. Results that carry an event are committed at once.
	// Default 1s.
	FlushInterval time.Duration
	// StartupSpread spreads the probes of watches that are overdue at start
	// (the process was down) over this window. Default 5m.
	StartupSpread time.Duration
	// MaxJitter bounds the deterministic offset added to cron-spec schedules
	// (@every schedules are spread over their whole interval). Default 5m.
	MaxJitter time.Duration
	// Hook, when set, is called inside the commit of every Change (alert
	// delivery enqueues there).
	Hook CommitHook
	// Ownership filters the watches this engine probes. Default: all.
	Ownership Ownership
	// Node names this engine in probed_by (a cluster node); empty for one
	// process.
	Node string
}

const (
	defaultConcurrency   = 32
	defaultFlush         = time.Second
	defaultStartupSpread = 5 * time.Minute
	defaultMaxJitter     = 5 * time.Minute
)

func (c *Config) fill() {
	if c.Prober == nil {
		c.Prober = &Prober{}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = defaultConcurrency
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Prober.Logger == nil {
		c.Prober.Logger = c.Logger
	}
	if c.Clock == nil {
		c.Clock = RealClock()
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
}

// Engine is the Service of the process (or node) that writes the watches:
// it loads them from a Store, probes them on schedule, runs the state
// machine, writes through one group-committing writer and publishes what
// each commit changed. Its jobs live in their own files: load.go,
// scheduler.go, writer.go and service.go.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	st    Store
	clock Clock
	hub   *Hub

	mu      sync.Mutex // guards entries, byIdent, heap, closed and every entry
	closed  bool       // set before the writer's queue closes
	entries map[string]*entry
	byIdent map[string]string
	heap    schedHeap
	wake    chan struct{}
	addLock [64]sync.Mutex // serialises Adds of one identity (by hash)

	queue runQueue // due watches waiting for a worker

	writes chan *writeOp

	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup // scheduler and workers
	wwg          sync.WaitGroup // writer
	cancelRemote func()
}

var _ Service = (*Engine)(nil)

type entry struct {
	rec     store.Record
	sched   Schedule
	hash    uint64
	gen     uint64
	running bool // queued or probing: a due fire is skipped, not stacked
	removed bool
	// stale: the record in memory may be behind the Store (another node
	// wrote it while this engine did not own it); re-read before probing.
	stale bool
	// last caches the latest Report of watches that list_expiring shows (or
	// soon may), so it answers without decoding JSON; nil for the rest,
	// which keeps memory small at 100,000 watches.
	last *probe.Report
	// alerts caches alert state of certificates seen in this process, so a
	// rotation back to one whose state is still in an uncommitted batch
	// cannot re-fire it. Nil for almost every watch.
	alerts map[string]store.Alert
}

// NewEngine loads every watch of st and starts the writer and, unless
// cfg.NoScheduler, the scheduler. Close stops it; st stays the caller's.
func NewEngine(st Store, cfg Config) (*Engine, error) {
	cfg.fill()
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		st:      st,
		clock:   cfg.Clock,
		hub:     NewHub(cfg.Logger),
		entries: make(map[string]*entry),
		byIdent: make(map[string]string),
		wake:    make(chan struct{}, 1),
		writes:  make(chan *writeOp, 4096),
	}
	e.queue.init()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if err := e.load(); err != nil {
		return nil, fmt.Errorf("watch: load watches: %w", err)
	}
	if rc, ok := st.(RemoteChanges); ok {
		e.cancelRemote = rc.SubscribeRemote(e.remoteChange)
	}
	e.wwg.Add(1)
	go e.writer()
	if !cfg.NoScheduler {
		e.startScheduler()
	}
	return e, nil
}

// Close stops the scheduler (waiting for running probes), commits what the
// writer holds, and stops the Notifiers. Calls after Close return ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	if e.cancelRemote != nil {
		e.cancelRemote()
	}
	e.cancel()
	e.queue.stop()
	e.wg.Wait()
	close(e.writes)
	e.wwg.Wait()
	e.hub.Close()
	return nil
}

// Subscribe registers a Notifier for the Changes this engine commits (and,
// with a RemoteChanges store, those of other nodes).
func (e *Engine) Subscribe(n Notifier) (cancel func()) { return e.hub.Subscribe(n) }

// releaseMemory unmaps the file pages a scan made resident (see
// store.DB.ReleaseMemory); they stay in the page cache.
func (e *Engine) releaseMemory() {
	if r, ok := e.st.(memoryReleaser); ok {
		if err := r.ReleaseMemory(); err != nil {
			e.log.Debug("watch: release file mappings", "err", err)
		}
	}
}

// releaseEvery paces releaseMemory while the writer commits: history
// appends touch pages all over the file and would otherwise make all of it
// resident over an hour at 100,000 probes/hour.
const releaseEvery = 2 * time.Minute

// remoteChange takes a Change another node committed: this engine's memory
// of the watch follows, and its subscribers hear it.
func (e *Engine) remoteChange(c Change) {
	id := c.Watch.ID
	switch {
	case c.Has(EventWatchRemoved):
		e.mu.Lock()
		e.dropLocked(id)
		e.mu.Unlock()
	case c.Has(EventWatchAdded):
		v, err := e.st.Get(id)
		if err != nil {
			e.log.Warn("watch: load a watch another node added", "id", id, "err", err)
			break
		}
		e.mu.Lock()
		if _, ok := e.entries[id]; !ok && !e.closed {
			e.insertLocked(e.newEntry(v.Record))
		}
		e.mu.Unlock()
	default:
		e.mu.Lock()
		if en := e.entries[id]; en != nil {
			en.stale, en.last = true, nil
		}
		e.mu.Unlock()
	}
	e.hub.Publish(c)
}
