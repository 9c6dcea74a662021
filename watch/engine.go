package watch

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// engine is the owner side: it holds the bbolt file, runs the scheduler and
// the state machine, and writes through one group-committing writer.
type engine struct {
	cfg *Config
	log *slog.Logger
	db  *store.DB
	pub func(Event) // fan-out, called after the event's state is committed
	// hook runs inside the commit of each event (Config.OnOwnerStart); nil
	// when none.
	hook CommitHook
	lst  func() // list changed

	mu      sync.Mutex // guards entries, byIdent, heap, closed and every entry
	closed  bool       // set before the writer's queue closes
	entries map[string]*entry
	byIdent map[string]string
	heap    schedHeap
	wake    chan struct{}
	addLock [64]sync.Mutex // serialises Adds of one identity (by hash)

	qmu   sync.Mutex
	qcond *sync.Cond
	queue []*entry
	qstop bool

	writes chan *writeOp

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // scheduler and workers
	wwg    sync.WaitGroup // writer
}

type entry struct {
	rec     store.Record
	sched   Schedule
	hash    uint64
	gen     uint64
	running bool // queued or probing: a due fire is skipped, not stacked
	removed bool
	isNew   bool // being created by Add: its commit announces list_changed
	// last caches the latest Report of watches that list_expiring shows (or
	// soon may), so it answers without decoding JSON; nil for the rest,
	// which keeps memory small at 100,000 watches.
	last *probe.Report
	// alerts caches alert state of certificates seen in this process, so a
	// rotation back to one whose state is still in an uncommitted batch
	// cannot re-fire it. Nil for almost every watch.
	alerts map[string]store.Alert
}

type writeOp struct {
	up     store.Update
	done   chan error // non-nil: caller waits for the commit
	urgent bool       // commit now (events waiting or a caller waiting)
	events []Event
	added  bool // new watch: list changed after commit
}

func openEngine(cfg *Config, db *store.DB, hook CommitHook, pub func(Event), lst func()) (*engine, error) {
	e := &engine{
		hook:    hook,
		cfg:     cfg,
		log:     cfg.Logger,
		db:      db,
		pub:     pub,
		lst:     lst,
		entries: make(map[string]*entry),
		byIdent: make(map[string]string),
		wake:    make(chan struct{}, 1),
		writes:  make(chan *writeOp, 4096),
	}
	e.qcond = sync.NewCond(&e.qmu)
	e.ctx, e.cancel = context.WithCancel(context.Background())

	start := time.Now()
	schedCache := make(map[string]Schedule)
	// Interning: at 100,000 watches, one copy of each schedule string,
	// threshold list and state word instead of one per watch.
	strs := make(map[string]string)
	intern := func(s string) string {
		if v, ok := strs[s]; ok {
			return v
		}
		strs[s] = s
		return s
	}
	thCache := make(map[string][]int)
	var bad int
	err := db.ForEach(func(r store.Record) error {
		s, ok := schedCache[r.Schedule]
		if !ok {
			var err error
			s, err = ParseSchedule(r.Schedule)
			if err != nil {
				// A schedule this binary cannot parse (written by another
				// version): keep the watch, probe it on the default.
				bad++
				s, _ = ParseSchedule(DefaultSchedule)
			}
			schedCache[r.Schedule] = s
		}
		r.Schedule = intern(r.Schedule)
		r.State, r.LastStatus = intern(r.State), intern(r.LastStatus)
		thKey := fmt.Sprint(r.Thresholds)
		if th, ok := thCache[thKey]; ok {
			r.Thresholds = th // shared, never mutated in place (Add replaces it)
		} else {
			thCache[thKey] = r.Thresholds
		}
		en := &entry{rec: r, sched: s, hash: idHash(r.ID)}
		e.entries[r.ID] = en
		e.byIdent[r.Identity()] = r.ID
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watch: load watches: %w", err)
	}
	if bad > 0 {
		e.log.Warn("watches with unparseable schedules use the default", "count", bad, "default", DefaultSchedule)
	}
	if !cfg.NoScheduler {
		now := time.Now()
		e.heap = make(schedHeap, 0, len(e.entries))
		for _, en := range e.entries {
			e.heap = append(e.heap, heapItem{at: e.firstFire(en, now), e: en, gen: en.gen})
		}
		heap.Init(&e.heap)
	}
	e.log.Info("watch: loaded", "watches", len(e.entries), "elapsed", time.Since(start))
	e.releaseMemory()

	e.wwg.Add(1)
	go e.writer()
	if !cfg.NoScheduler {
		// Fill the Report cache of what list_expiring shows now, so its
		// first call after a start is as fast as the rest (a long-lived
		// serve; the CLI asks once and would only pay twice).
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if _, err := e.expiring(DefaultExpiringDays); err != nil && e.ctx.Err() == nil {
				e.log.Warn("watch: warm the expiring cache", "err", err)
			}
			e.releaseMemory()
		}()
		e.wg.Add(1)
		go e.scheduler()
		for i := 0; i < cfg.Concurrency; i++ {
			e.wg.Add(1)
			go e.worker()
		}
	}
	return e, nil
}

// firstFire schedules a watch after a (re)start: on its regular grid, unless
// it is overdue (the process was down longer than its period), in which case
// it is probed soon, spread over StartupSpread so a restart does not probe
// 100,000 watches at once.
func (e *engine) firstFire(en *entry, now time.Time) time.Time {
	period := en.sched.period
	if e.cfg.MinInterval > period {
		period = e.cfg.MinInterval
	}
	last := en.rec.LastCheckedAt
	if last.IsZero() || now.Sub(last) > period {
		spread := e.cfg.StartupSpread
		if period < spread {
			spread = period
		}
		if spread <= 0 {
			return now
		}
		return now.Add(time.Duration(en.hash % uint64(spread)))
	}
	return nextFire(en.sched, en.hash, now, last, e.cfg.MinInterval, e.cfg.MaxJitter)
}

func (e *engine) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.qmu.Lock()
	e.qstop = true
	e.qcond.Broadcast()
	e.qmu.Unlock()
	e.wg.Wait()
	close(e.writes)
	e.wwg.Wait()
}

// releaseMemory unmaps the file pages a scan made resident (see
// store.DB.ReleaseMemory); they stay in the page cache.
func (e *engine) releaseMemory() {
	if err := e.db.ReleaseMemory(); err != nil {
		e.log.Debug("watch: release file mappings", "err", err)
	}
}

// releaseEvery paces ReleaseMemory while the writer commits: history
// appends touch pages all over the file and would otherwise make all of it
// resident over an hour at 100,000 probes/hour.
const releaseEvery = 2 * time.Minute

// --- scheduler ---

func (e *engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *engine) scheduler() {
	defer e.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		e.mu.Lock()
		now := time.Now()
		var due []*entry
		for len(e.heap) > 0 && !e.heap[0].at.After(now) {
			it := e.heap.pop()
			en := it.e
			if it.gen != en.gen || en.removed {
				continue
			}
			if en.running {
				e.log.Debug("watch: previous run still going, skipping", "id", en.rec.ID)
			} else {
				en.running = true
				due = append(due, en)
			}
			if next := nextFire(en.sched, en.hash, now, now, e.cfg.MinInterval, e.cfg.MaxJitter); !next.IsZero() {
				e.heap.push(heapItem{at: next, e: en, gen: en.gen})
			}
		}
		wait := time.Hour
		if len(e.heap) > 0 {
			wait = e.heap[0].at.Sub(now)
		}
		e.mu.Unlock()
		if len(due) > 0 {
			e.qmu.Lock()
			e.queue = append(e.queue, due...)
			e.qcond.Broadcast()
			e.qmu.Unlock()
		}
		timer.Reset(wait)
		select {
		case <-e.ctx.Done():
			return
		case <-e.wake:
		case <-timer.C:
		}
	}
}

// reschedule puts en on its grid from now (after Add changed its schedule).
// Caller holds e.mu.
func (e *engine) reschedule(en *entry, now time.Time) {
	if e.cfg.NoScheduler {
		return
	}
	en.gen++
	if next := nextFire(en.sched, en.hash, now, now, e.cfg.MinInterval, e.cfg.MaxJitter); !next.IsZero() {
		e.heap.push(heapItem{at: next, e: en, gen: en.gen})
	}
	e.poke()
}

func (e *engine) worker() {
	defer e.wg.Done()
	for {
		e.qmu.Lock()
		for len(e.queue) == 0 && !e.qstop {
			e.qcond.Wait()
		}
		if e.qstop {
			e.qmu.Unlock()
			return
		}
		en := e.queue[0]
		e.queue[0] = nil
		e.queue = e.queue[1:]
		e.qmu.Unlock()
		e.runScheduled(en)
	}
}

func (e *engine) runScheduled(en *entry) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("watch: probe panicked", "id", en.rec.ID, "panic", r, "stack", string(debug.Stack()))
		}
		e.mu.Lock()
		en.running = false
		e.mu.Unlock()
	}()
	e.mu.Lock()
	if en.removed {
		e.mu.Unlock()
		return
	}
	rec := en.rec
	e.mu.Unlock()
	rep, err := e.probe(e.ctx, rec)
	if err != nil {
		e.log.Warn("watch: probe could not run", "id", rec.ID, "target", targetName(rec.Target), "err", err)
		return
	}
	if e.ctx.Err() != nil {
		// Stopping: the probe was cut short, its "timeout" is ours, not the
		// server's. Do not count it.
		return
	}
	e.mu.Lock()
	if en.removed || e.closed {
		e.mu.Unlock()
		return
	}
	e.applyLocked(en, &rep, false, nil)
	e.mu.Unlock()
}

// probe runs the configured probe with the watch's target, thresholds and a
// deadline of its timeout plus a margin for the probe's own bookkeeping.
func (e *engine) probe(ctx context.Context, rec store.Record) (rep probe.Report, err error) {
	t := targetOf(rec)
	ctx, cancel := context.WithTimeout(ctx, t.Timeout+5*time.Second)
	defer cancel()
	defer func() {
		// A panicking probe is our bug, not the server's: no Report, and
		// neither the scheduler nor an Add caller goes down with it.
		if r := recover(); r != nil {
			e.log.Error("watch: probe panicked", "id", rec.ID, "panic", r, "stack", string(debug.Stack()))
			rep, err = probe.Report{}, fmt.Errorf("watch: probe of %s panicked: %v", targetName(rec.Target), r)
		}
	}()
	rep, err = e.cfg.Probe(ctx, t, probe.Options{Now: e.cfg.Now(), Thresholds: append([]int(nil), rec.Thresholds...), ClientCertName: rec.ClientCert})
	if err != nil {
		return probe.Report{}, err
	}
	if rep.CheckedAt.IsZero() {
		rep.CheckedAt = e.cfg.Now()
	}
	return rep, nil
}

func targetOf(rec store.Record) probe.Target {
	timeout := time.Duration(rec.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	if timeout > maxProbeTimeout {
		timeout = maxProbeTimeout
	}
	return probe.Target{Host: rec.Target.Host, Port: rec.Target.Port, SNI: rec.Target.SNI,
		IP: rec.Target.IP, Path: rec.Path, Scheme: rec.Scheme, Timeout: timeout}
}

// applyLocked runs the state machine on a report and queues the write that
// persists it. Caller holds e.mu (and has checked e.closed).
func (e *engine) applyLocked(en *entry, rep *probe.Report, create bool, done chan error) {
	now := e.cfg.Now()
	out := evaluate(en.rec, rep, now, func(fp string) (store.Alert, bool) {
		if a, ok := en.alerts[fp]; ok {
			return a, true
		}
		a, ok, err := e.db.Alert(en.rec.ID, fp)
		if err != nil {
			e.log.Error("watch: read alert state", "id", en.rec.ID, "err", err)
		}
		return a, ok
	})
	en.rec = out.rec
	en.last = nil
	if cacheable(&out.rec, now) {
		en.last = rep
	}
	if out.alert != nil {
		if en.alerts == nil {
			en.alerts = make(map[string]store.Alert, 1)
		}
		en.alerts[out.alert.Fingerprint] = *out.alert
	}
	// Subscribers get their own copy of the Report: the writer is encoding
	// this one and the cache keeps it.
	if len(out.events) > 0 {
		c := *rep
		w := toWatch(out.rec, &c)
		for i := range out.events {
			out.events[i].Watch = w
		}
	}
	op := &writeOp{
		up:     store.Update{Record: out.rec, Create: create, Report: rep, Transition: out.transition, Alert: out.alert},
		done:   done,
		urgent: done != nil || len(out.events) > 0,
		events: out.events,
		added:  en.isNew,
	}
	// The op enters the writer's queue while e.mu is still held, so writes
	// of one watch commit in the order its state changed.
	e.writes <- op
}

// --- writer ---

const maxBatch = 1000

// writer group-commits: a batch is committed when a caller or an event is
// waiting, when it reaches maxBatch, or FlushInterval after its first op.
// Events are published only after their batch is durable, so an alert is
// recorded before anyone is told and never repeats after a restart.
func (e *engine) writer() {
	defer e.wwg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	lastRelease := time.Now()
	for {
		if time.Since(lastRelease) > releaseEvery {
			e.releaseMemory()
			lastRelease = time.Now()
		}
		op, ok := <-e.writes
		if !ok {
			return
		}
		batch := []*writeOp{op}
		urgent := op.urgent
		timer.Reset(e.cfg.FlushInterval)
	collect:
		for len(batch) < maxBatch {
			if urgent {
				// Take what is already queued, without waiting.
				select {
				case op, ok := <-e.writes:
					if !ok {
						break collect
					}
					batch = append(batch, op)
				default:
					break collect
				}
				continue
			}
			select {
			case op, ok := <-e.writes:
				if !ok {
					break collect
				}
				batch = append(batch, op)
				urgent = urgent || op.urgent
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		e.commit(batch)
	}
}

func (e *engine) commit(batch []*writeOp) {
	ups := make([]store.Update, len(batch))
	for i, op := range batch {
		ups[i] = op.up
		if e.hook != nil && len(op.events) > 0 {
			ups[i].InTx = e.inTx(op.events)
		}
	}
	applied, err := e.db.Apply(ups)
	if err != nil {
		e.log.Error("watch: commit failed; results and alerts of this batch are lost", "ops", len(batch), "err", err)
	}
	for i, op := range batch {
		if op.done != nil {
			op.done <- err
		}
		if err != nil || !applied[i] {
			continue
		}
		for _, ev := range op.events {
			e.pub(ev)
		}
		if op.added {
			e.lst()
		}
	}
}

// inTx runs the commit hook for the events of one update inside its
// transaction. A panicking hook is our bug: it rolls the batch back rather
// than take the process down (the results are probed again next time).
func (e *engine) inTx(evs []Event) func(tx *store.Tx) (err error) {
	return func(tx *store.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				e.log.Error("watch: commit hook panicked", "panic", r, "stack", string(debug.Stack()))
				err = fmt.Errorf("commit hook panicked: %v", r)
			}
		}()
		for _, ev := range evs {
			if err := e.hook(tx, ev); err != nil {
				return err
			}
		}
		return nil
	}
}

// --- Service ---

func newID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return "w_" + hex.EncodeToString(b[:])
}

// normTarget validates a target for a watch and returns its identity info.
func normTarget(t probe.Target) (probe.TargetInfo, error) {
	host := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(t.Host), "."))
	if host == "" {
		return probe.TargetInfo{}, &probe.FieldError{Field: "target", Reason: "host is empty"}
	}
	port := t.Port
	if port == 0 {
		port = 443
	}
	if port < 1 || port > 65535 {
		return probe.TargetInfo{}, &probe.FieldError{Field: "target", Reason: fmt.Sprintf("port %d out of range 1-65535", port)}
	}
	sni := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(t.SNI), "."))
	if sni == host {
		sni = ""
	}
	ip := strings.TrimSpace(t.IP)
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return probe.TargetInfo{}, &probe.FieldError{Field: "ip", Reason: fmt.Sprintf("%q is not an IP address", ip)}
		}
		ip = a.String()
	}
	return probe.TargetInfo{Host: host, Port: port, SNI: sni, IP: ip}, nil
}

func (e *engine) add(ctx context.Context, spec Spec) (Watch, error) {
	ti, err := normTarget(spec.Target)
	if err != nil {
		return Watch{}, err
	}
	sched, err := ParseSchedule(spec.Schedule)
	if err != nil {
		return Watch{}, err
	}
	th, err := NormalizeThresholds(spec.Thresholds)
	if err != nil {
		return Watch{}, err
	}
	ft, err := normalizeFailureThreshold(spec.FailureThreshold)
	if err != nil {
		return Watch{}, err
	}
	timeoutMS := int(spec.Target.Timeout / time.Millisecond)
	if timeoutMS < 0 || spec.Target.Timeout > maxProbeTimeout {
		return Watch{}, &probe.FieldError{Field: "timeout_ms", Reason: fmt.Sprintf("%d out of range 0-%d", timeoutMS, maxProbeTimeout/time.Millisecond)}
	}
	scheme := spec.Target.Scheme
	ident := store.Identity(ti, scheme)
	l := &e.addLock[idHash(ident)%uint64(len(e.addLock))]
	l.Lock()
	defer l.Unlock()

	// The record as it will be, before the probe (which uses its config).
	now := e.cfg.Now()
	e.mu.Lock()
	var rec store.Record
	en, exists := e.entries[e.byIdent[ident]]
	if exists {
		rec = en.rec
	} else {
		rec = store.Record{ID: newID(), Target: ti, Scheme: scheme, CreatedAt: now, State: StatePending}
	}
	e.mu.Unlock()
	rec.Schedule = sched.Spec
	rec.Thresholds = th
	rec.FailureThreshold = ft
	rec.TimeoutMS = timeoutMS
	rec.Path = spec.Target.Path
	rec.ClientCert = spec.ClientCert
	rec.UpdatedAt = now

	rep, err := e.probe(ctx, rec)
	if err != nil {
		return Watch{}, err
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up mid-probe; its timeout is not the server's.
		return Watch{}, fmt.Errorf("watch: add %s: %w", targetName(ti), err)
	}

	done := make(chan error, 1)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Watch{}, errEngineClosed
	}
	en, exists = e.entries[e.byIdent[ident]]
	if exists {
		// Keep state (failures, fingerprint, fired stages) from memory, take
		// the new configuration.
		cur := en.rec
		cur.Schedule, cur.Thresholds, cur.FailureThreshold = rec.Schedule, rec.Thresholds, rec.FailureThreshold
		cur.TimeoutMS, cur.Path, cur.ClientCert, cur.UpdatedAt = rec.TimeoutMS, rec.Path, rec.ClientCert, rec.UpdatedAt
		en.rec = cur
		en.sched = sched
	} else {
		en = &entry{rec: rec, sched: sched, hash: idHash(rec.ID)}
		e.entries[rec.ID] = en
		e.byIdent[ident] = rec.ID
	}
	en.isNew = !exists
	e.applyLocked(en, &rep, true, done)
	en.isNew = false
	ret := rep // the caller's own copy (see applyLocked)
	w := toWatch(en.rec, &ret)
	e.reschedule(en, time.Now())
	e.mu.Unlock()

	select {
	case err := <-done:
		if err != nil {
			if !exists {
				// Not on disk: do not keep probing a watch that a restart
				// would not know.
				e.mu.Lock()
				if e.entries[w.ID] == en {
					en.removed = true
					en.gen++
					delete(e.entries, w.ID)
					delete(e.byIdent, ident)
				}
				e.mu.Unlock()
			}
			return Watch{}, fmt.Errorf("watch: add %s: %w", targetName(ti), err)
		}
	case <-ctx.Done():
		// The write is queued and will commit; the caller just stops waiting.
		return Watch{}, fmt.Errorf("watch: add %s: %w", targetName(ti), ctx.Err())
	}
	return w, nil
}

func (e *engine) remove(ctx context.Context, id, target string) (Watch, error) {
	e.mu.Lock()
	if id == "" {
		var err error
		id, err = e.findTargetLocked(target)
		if err != nil {
			e.mu.Unlock()
			return Watch{}, err
		}
	}
	en, ok := e.entries[id]
	if ok {
		en.removed = true
		en.gen++
		delete(e.entries, id)
		ident := en.rec.Identity()
		if e.byIdent[ident] == id {
			delete(e.byIdent, ident)
		}
	}
	e.mu.Unlock()
	v, err := e.db.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return Watch{}, fmt.Errorf("id %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Watch{}, err
	}
	if _, err := e.db.Delete(id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Watch{}, fmt.Errorf("id %q: %w", id, ErrNotFound)
		}
		return Watch{}, err
	}
	e.lst()
	return toWatch(v.Record, v.LastReport), nil
}

// findTargetLocked resolves a target string to a watch id: host and port
// must match; among several watches of one host:port (different ip or sni)
// the one without ip and sni wins, else the choice is ambiguous.
func (e *engine) findTargetLocked(target string) (string, error) {
	if strings.TrimSpace(target) == "" {
		return "", &probe.FieldError{Field: "id", Reason: "give an id or a target"}
	}
	t, err := probe.ParseTarget(target, "", "", 0)
	if err != nil {
		return "", err
	}
	ti, err := normTarget(t)
	if err != nil {
		return "", err
	}
	if id, ok := e.byIdent[store.Identity(ti, t.Scheme)]; ok {
		return id, nil
	}
	var cands []string
	for _, en := range e.entries {
		if en.rec.Target.Host == ti.Host && en.rec.Target.Port == ti.Port && en.rec.Scheme == t.Scheme {
			cands = append(cands, en.rec.ID)
		}
	}
	switch len(cands) {
	case 0:
		return "", fmt.Errorf("target %q: %w", target, ErrNotFound)
	case 1:
		return cands[0], nil
	}
	return "", &probe.FieldError{Field: "target", Reason: fmt.Sprintf("%q matches %d watches (different ip or sni); remove by id", target, len(cands))}
}

func (e *engine) get(id string) (Watch, error) {
	v, err := e.db.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return Watch{}, fmt.Errorf("id %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Watch{}, err
	}
	return toWatch(v.Record, v.LastReport), nil
}

func (e *engine) list() ([]Watch, error) {
	vs, err := e.db.List()
	if err != nil {
		return nil, err
	}
	if len(vs) > 1000 {
		e.releaseMemory() // a full read touched the whole file
	}
	return toWatches(vs), nil
}

// cacheWindow: watches whose certificate expires within it, or that are
// not healthy, keep their last Report in memory (see entry.last).
const cacheWindow = 90 * 24 * time.Hour

func cacheable(r *store.Record, now time.Time) bool {
	return r.State == StateDown || r.LastStatus != string(probe.StatusOK) ||
		(!r.NotAfter.IsZero() && r.NotAfter.Before(now.Add(cacheWindow)))
}

// expiring answers list_expiring: the ids come from the store's expiry index
// (no scan), the records from memory and the Reports from the cache, falling
// back to the store for what is not cached.
func (e *engine) expiring(withinDays int) ([]Watch, error) {
	now := e.cfg.Now()
	// days_remaining (rounded down) <= withinDays  <=>  not_after < now + (withinDays+1) days.
	until := now.Add(time.Duration(withinDays+1) * 24 * time.Hour)
	ids, err := e.db.ExpiringIDs(until)
	if err != nil {
		return nil, err
	}
	type hit struct {
		w        Watch
		notAfter time.Time
	}
	hits := make([]hit, 0, len(ids))
	var missing []*entry
	e.mu.Lock()
	for _, id := range ids {
		en := e.entries[id]
		if en == nil {
			continue
		}
		// The index is what is committed; memory may be up to one group
		// commit ahead (a renewal just seen), so re-check.
		r := &en.rec
		if r.State != StateDown && (r.NotAfter.IsZero() || !r.NotAfter.Before(until)) {
			continue
		}
		if en.last == nil {
			missing = append(missing, en)
			continue
		}
		rep := *en.last // callers get their own Report value
		hits = append(hits, hit{toWatch(en.rec, &rep), r.NotAfter})
	}
	e.mu.Unlock()
	for _, en := range missing {
		v, err := e.db.Get(en.rec.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		rec := en.rec
		// Cache only a Report that matches the record in memory (the store
		// may lag by one group commit).
		if v.LastReport != nil && v.LastReport.CheckedAt.Equal(rec.LastCheckedAt) && en.last == nil && cacheable(&rec, now) {
			c := *v.LastReport
			en.last = &c
		}
		e.mu.Unlock()
		hits = append(hits, hit{toWatch(rec, v.LastReport), rec.NotAfter})
	}
	sort.Slice(hits, func(i, j int) bool {
		a, b := hits[i].notAfter, hits[j].notAfter
		if a.IsZero() != b.IsZero() {
			return b.IsZero() // no certificate known: last
		}
		if !a.Equal(b) {
			return a.Before(b)
		}
		return hits[i].w.ID < hits[j].w.ID
	})
	out := make([]Watch, len(hits))
	for i := range hits {
		out[i] = hits[i].w
	}
	return out, nil
}

func (e *engine) history(id string, limit int) ([]probe.Report, error) {
	rs, err := e.db.History(id, limit)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("id %q: %w", id, ErrNotFound)
	}
	return rs, err
}

func toWatches(vs []store.View) []Watch {
	out := make([]Watch, len(vs))
	for i, v := range vs {
		out[i] = toWatch(v.Record, v.LastReport)
	}
	return out
}

func toWatch(r store.Record, last *probe.Report) Watch {
	w := Watch{
		ID:                  r.ID,
		Target:              r.Target,
		Schedule:            r.Schedule,
		ThresholdsDays:      append([]int(nil), r.Thresholds...),
		State:               r.State,
		ConsecutiveFailures: r.ConsecutiveFailures,
		LastReport:          last,
		CreatedAt:           r.CreatedAt.UTC(),
		FailureThreshold:    r.FailureThreshold,
		TimeoutMS:           r.TimeoutMS,
		Path:                r.Path,
		Scheme:              r.Scheme,
		ClientCert:          r.ClientCert,
	}
	if w.State == "" {
		w.State = StatePending
	}
	if w.Target.SNI == "" {
		// The contract shows the SNI actually sent.
		w.Target.SNI = r.Target.Host
		if net.ParseIP(r.Target.Host) != nil {
			w.Target.SNI = ""
		}
	}
	if !r.LastCheckedAt.IsZero() {
		t := r.LastCheckedAt.UTC()
		w.LastCheckedAt = &t
	}
	return w
}
