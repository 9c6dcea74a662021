package watch

import (
	"context"
	"errors"
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
	// MaxWatches bounds the watches in total (serve --max-watches); Add of
	// a new watch beyond it is refused. Default DefaultMaxWatches.
	MaxWatches int
	// MaxWatchesPerSubject bounds the watches one subject creates: an
	// OAuth subject (Spec.CreatedBy), else an MCP session (Spec.Session);
	// a caller with neither (the command line) has only the total. Default
	// DefaultMaxWatchesPerSubject.
	MaxWatchesPerSubject int
	// RecentEvery is how often every watch's 24-hour and 30-day uptime and
	// latency are recomputed. Default DefaultRecentEvery.
	RecentEvery time.Duration
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
	if c.MaxWatches <= 0 {
		c.MaxWatches = DefaultMaxWatches
	}
	if c.MaxWatchesPerSubject <= 0 {
		c.MaxWatchesPerSubject = DefaultMaxWatchesPerSubject
	}
	if c.RecentEvery <= 0 {
		c.RecentEvery = DefaultRecentEvery
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

	mu       sync.Mutex // guards entries, byIdent, subjects, heap, closed and every entry
	closed   bool       // set before the writer's queue closes
	entries  map[string]*entry
	byIdent  map[string]string
	subjects map[string]int // watches per subject (see limits.go)
	heap     schedHeap
	wake     chan struct{}
	addLock  [64]sync.Mutex // serialises Adds of one identity (by hash)

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
	// subject is who the watch counts against (limits.go); "" for none.
	subject string
	// recent are the watch's 24-hour and 30-day figures (recent.go).
	recent figures
}

// NewEngine loads every watch of st and starts the writer and, unless
// cfg.NoScheduler, the scheduler. Close stops it; st stays the caller's.
func NewEngine(st Store, cfg Config) (*Engine, error) {
	cfg.fill()
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger,
		st:       st,
		clock:    cfg.Clock,
		hub:      NewHub(cfg.Logger),
		entries:  make(map[string]*entry),
		byIdent:  make(map[string]string),
		subjects: make(map[string]int),
		wake:     make(chan struct{}, 1),
		writes:   make(chan *writeOp, 4096),
	}
	e.queue.init()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if err := e.load(); err != nil {
		return nil, fmt.Errorf("watch: load watches: %w", err)
	}
	if rc, ok := st.(RemoteChanges); ok {
		e.cancelRemote = rc.SubscribeRemote(e.remoteChange)
	}
	if oc, ok := cfg.Ownership.(OwnershipChanges); ok {
		oc.OnGained(e.gained)
	}
	e.wwg.Add(1)
	go e.writer()
	if !cfg.NoScheduler {
		e.startScheduler()
		e.wg.Add(1)
		go e.recentLoop()
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

// releaseEvery paces releaseMemory while the writer commits: each probe
// result touches four or five pages all over the file, and each page fault
// maps fifteen neighbours (fault-around), so 28 results a second (100,000
// probes an hour) made 8 MB of the file resident a second, and a burst of
// hourly cron watches 25 MB a second. Dropping the mappings after about
// every commit keeps that to a few tens of MB; the pages stay in the page
// cache, and the next read maps them again for a minor fault.
const releaseEvery = time.Second

// remoteChange takes a Change another node committed: this engine's copy
// of the watch follows the store (added, changed or removed), and its
// subscribers hear the events, if the change had any (a routine probe
// result elsewhere only keeps the copy current).
func (e *Engine) remoteChange(c Change) {
	id := c.Watch.ID
	v, err := e.st.Get(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.mu.Lock()
		if en := e.entries[id]; en != nil {
			c.Watch = toWatch(en.rec, nil)
			e.dropLocked(id)
		}
		e.mu.Unlock()
	case err != nil:
		e.log.Warn("watch: read a watch another node changed", "id", id, "err", err)
	default:
		e.mu.Lock()
		e.followLocked(v.Record)
		e.mu.Unlock()
		c.Watch = toWatch(v.Record, v.LastReport)
	}
	if len(c.Events) > 0 {
		e.hub.Publish(c)
	}
}

// followLocked makes memory hold r as the store does: a watch new to this
// engine is scheduled; a known one takes the record (and its schedule, if
// it changed), dropping what was cached of it. Caller holds e.mu.
func (e *Engine) followLocked(r store.Record) {
	if e.closed {
		return
	}
	en := e.entries[r.ID]
	if en == nil {
		e.insertLocked(e.newEntry(r))
		return
	}
	resched := r.Schedule != en.rec.Schedule
	en.rec, en.stale, en.last, en.alerts = r, false, nil, nil
	if resched {
		en.sched = e.newEntry(r).sched
		e.reschedule(en, e.clock.Now())
	}
}

// gained reschedules the watches this engine just came to own (shards
// taken over): an overdue one is probed soon, spread as after a restart,
// the others on their grid. Each is read again before its first probe.
func (e *Engine) gained(owns func(id string) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.cfg.NoScheduler {
		return
	}
	now := e.clock.Now()
	for id, en := range e.entries {
		if !owns(id) {
			continue
		}
		en.stale = true
		en.gen++
		e.heap.push(heapItem{at: e.firstFire(en, now), e: en, gen: en.gen})
	}
	e.poke()
}

// StaleSince is, while the store answers from a copy that may be behind
// (a cluster node cut off from etcd), the last time that copy was known
// current; nil otherwise.
func (e *Engine) StaleSince() *time.Time {
	st, ok := e.st.(Staleness)
	if !ok {
		return nil
	}
	since, stale := st.StaleSince()
	if !stale {
		return nil
	}
	t := since.UTC()
	return &t
}
