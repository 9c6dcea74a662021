package watch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "w_" + hex.EncodeToString(b[:])
}

// Add creates or updates a watch and probes it once now (see Service).
func (e *Engine) Add(ctx context.Context, spec Spec) (Watch, error) {
	c, err := validate(spec)
	if err != nil {
		return Watch{}, err
	}
	ident := c.target.Identity()
	l := &e.addLock[idHash(ident)%uint64(len(e.addLock))]
	l.Lock()
	defer l.Unlock()

	// The record as it will be, before the probe (which uses its config).
	now := e.clock.Now()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Watch{}, ErrClosed
	}
	rec := store.Record{ID: newID(), CreatedAt: now, State: StatePending}
	if en, ok := e.entries[e.byIdent[ident]]; ok {
		rec = en.rec
	} else if err := e.admitLocked(c.subject()); err != nil {
		e.mu.Unlock()
		return Watch{}, err // before a probe that would be for nothing
	}
	e.mu.Unlock()
	c.apply(&rec)
	rec.UpdatedAt = now

	rep, err := e.probe(ctx, rec)
	if err != nil {
		return Watch{}, err
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up mid-probe; its timeout is not the server's.
		return Watch{}, fmt.Errorf("watch: add %s: %w", targetName(rec.Target), err)
	}
	// In a store shared by cluster nodes the write may lose a race with
	// another writer of the watch (its owner's probe, an Add elsewhere):
	// the store then hands this engine the watch as it is, and the same
	// Report is decided again on it.
	for try := 1; ; try++ {
		w, err := e.commitAdd(ctx, c, rec, &rep, now)
		if !errors.Is(err, errNotApplied) || try == addTries {
			return w, err
		}
	}
}

// addTries bounds the attempts of an Add that keeps losing races.
const addTries = 3

// commitAdd applies the first probe of an Add to the watch of its target
// (rec when there is none yet) and waits for the write. A new watch must
// pass the caps again: Adds of other targets may have filled them during
// the probe.
func (e *Engine) commitAdd(ctx context.Context, c config, rec store.Record, rep *probe.Report, now time.Time) (Watch, error) {
	ident := c.target.Identity()
	done := make(chan error, 1)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Watch{}, ErrClosed
	}
	en, exists := e.entries[e.byIdent[ident]]
	if exists {
		// Keep state (failures, fingerprint, fired stages) from memory, take
		// the new configuration.
		c.apply(&en.rec)
		en.rec.UpdatedAt = now
		en.sched = c.sched
	} else {
		if err := e.admitLocked(c.subject()); err != nil {
			e.mu.Unlock()
			return Watch{}, err
		}
		en = &entry{rec: rec, sched: c.sched, hash: idHash(rec.ID), subject: c.subject()}
		e.entries[rec.ID] = en
		e.byIdent[ident] = rec.ID
		e.countLocked(en, 1)
	}
	r := *rep
	w := e.applyLocked(en, &r, true, !exists, done)
	e.reschedule(en, e.clock.Now())
	e.mu.Unlock()

	select {
	case err := <-done:
		if err != nil {
			if !exists {
				// Not on disk: do not keep probing a watch that a restart
				// would not know.
				e.mu.Lock()
				if e.entries[w.ID] == en {
					e.dropLocked(w.ID)
				}
				e.mu.Unlock()
			}
			return Watch{}, fmt.Errorf("watch: add %s: %w", targetName(rec.Target), err)
		}
	case <-ctx.Done():
		// The write is queued and will commit; the caller just stops waiting.
		return Watch{}, fmt.Errorf("watch: add %s: %w", targetName(rec.Target), ctx.Err())
	}
	return w, nil
}

// applyLocked runs the state machine on a report and queues the write that
// persists it; create allows the record to be new, added marks a watch Add
// creates, done (if set) receives the commit's error. It returns the watch
// as written, with its own copy of the Report. Caller holds e.mu (and has
// checked e.closed).
func (e *Engine) applyLocked(en *entry, rep *probe.Report, create, added bool, done chan error) Watch {
	now := e.clock.Now()
	out := evaluate(en.rec, rep, now, func(fp string) (store.Alert, bool) {
		if a, ok := en.alerts[fp]; ok {
			return a, true
		}
		a, ok, err := e.st.Alert(en.rec.ID, fp)
		if err != nil {
			e.log.Error("watch: read alert state", "id", en.rec.ID, "err", err)
		}
		return a, ok
	})
	out.rec.ProbedBy = e.cfg.Node
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
	events := out.events
	if added {
		events = append([]Event{{Kind: EventWatchAdded, Level: LevelInfo,
			Message: fmt.Sprintf("watching %s as %s (%s)", targetName(out.rec.Target), out.rec.ID, out.rec.Schedule)}}, events...)
	}
	// The writer encodes rep, the cache keeps it, subscribers and the
	// caller each get a copy of their own.
	var change *Change
	if len(events) > 0 {
		c := *rep
		change = &Change{Watch: toWatch(out.rec, &c), Events: events}
	}
	op := &writeOp{
		up: store.Update{Record: out.rec, Create: create, Report: rep, Transition: out.transition, Alert: out.alert,
			Feed: feedEntries(change, now)},
		done:   done,
		urgent: done != nil || change != nil,
		change: change,
	}
	// The op enters the writer's queue while e.mu is still held, so writes
	// of one watch commit in the order its state changed.
	e.writes <- op
	ret := *rep
	return toWatch(out.rec, &ret)
}

// feedEntries are the alert feed entries of a Change.
func feedEntries(c *Change, at time.Time) []store.FeedEntry {
	if c == nil {
		return nil
	}
	w := &c.Watch
	out := make([]store.FeedEntry, len(c.Events))
	for i, ev := range c.Events {
		out[i] = store.FeedEntry{Time: at.UTC(), Kind: ev.Kind, Level: ev.Level, Message: ev.Message,
			WatchID: w.ID, Target: targetName(w.Target), State: w.State, Subject: w.CreatedBy, ToolsChanged: ev.Tools}
		if r := w.LastReport; r != nil {
			out[i].Status, out[i].ExpiryStage = string(r.Status), string(r.ExpiryStage)
		}
	}
	return out
}

// Remove deletes a watch by id, or by target string when id is empty.
func (e *Engine) Remove(_ context.Context, id, target string) (Watch, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Watch{}, ErrClosed
	}
	var err error
	switch {
	case id != "" && target != "":
		err = &probe.FieldError{Field: "id", Reason: "give id or target, not both"}
	case id == "":
		id, err = e.findTargetLocked(target)
	}
	if err != nil {
		e.mu.Unlock()
		return Watch{}, err
	}
	e.dropLocked(id)
	e.mu.Unlock()
	v, err := e.st.Get(id)
	if err != nil {
		return Watch{}, notFound(id, err)
	}
	w := toWatch(v.Record, v.LastReport)
	ev := Event{Kind: EventWatchRemoved, Level: LevelInfo, Message: fmt.Sprintf("stopped watching %s (%s)", targetName(w.Target), w.ID)}
	change := Change{Watch: toWatch(v.Record, copyReport(v.LastReport)), Events: []Event{ev}}
	if _, err := e.st.Delete(id, feedEntries(&change, e.clock.Now())...); err != nil {
		return Watch{}, notFound(id, err)
	}
	e.hub.Publish(change)
	return w, nil
}

func copyReport(r *probe.Report) *probe.Report {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

func notFound(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("id %q: %w", id, ErrNotFound)
	}
	return err
}

// findTargetLocked resolves a target string to a watch id: host and port
// must match; among several watches of one host:port (different ip or sni)
// the one without ip and sni wins, else the choice is ambiguous.
func (e *Engine) findTargetLocked(target string) (string, error) {
	if _, err := required("target", target); err != nil {
		return "", &probe.FieldError{Field: "id", Reason: "required: give an id or a target"}
	}
	r, err := targetRecord(target, "", "", 0)
	if err != nil {
		return "", err
	}
	if id, ok := e.byIdent[r.Identity()]; ok {
		return id, nil
	}
	var cands []string
	for _, en := range e.entries {
		if en.rec.Target.Host == r.Target.Host && en.rec.Target.Port == r.Target.Port && en.rec.Scheme == r.Scheme {
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

// Get returns one watch with its latest Report.
func (e *Engine) Get(_ context.Context, id string) (Watch, error) {
	if err := e.open(); err != nil {
		return Watch{}, err
	}
	id, err := required("id", id)
	if err != nil {
		return Watch{}, err
	}
	v, err := e.st.Get(id)
	if err != nil {
		return Watch{}, notFound(id, err)
	}
	w := toWatch(v.Record, v.LastReport)
	w.StaleSince = e.StaleSince()
	e.recentOf(id).apply(&w)
	return w, nil
}

// open returns ErrClosed once the engine is closed.
func (e *Engine) open() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	return nil
}

// Alerts returns a page of the alert feed (see Service).
func (e *Engine) Alerts(_ context.Context, after string, limitN int) (AlertFeed, error) {
	cur, err := parseFeedCursor(after)
	if err != nil {
		return AlertFeed{}, err
	}
	n, err := limit("limit", limitN, DefaultAlertsLimit, MaxAlertsLimit)
	if err != nil {
		return AlertFeed{}, err
	}
	if err := e.open(); err != nil {
		return AlertFeed{}, err
	}
	p, err := e.st.Feed(cur, n)
	if err != nil {
		return AlertFeed{}, err
	}
	out := AlertFeed{Alerts: make([]AlertEntry, 0, len(p.Entries)), Next: after}
	if after != "" && p.Oldest > cur+1 {
		out.Missed = int(p.Oldest - cur - 1)
	}
	for _, fe := range p.Entries {
		out.Alerts = append(out.Alerts, AlertEntry{ID: strconv.FormatUint(fe.Seq, 10), FeedEntry: fe})
		out.Next = strconv.FormatUint(fe.Seq, 10)
	}
	return out, nil
}

// lifetimeLeftPct is the share of the leaf's lifetime left when it was
// checked, in percent with one decimal; 0 once expired.
func lifetimeLeftPct(l *probe.CertInfo, at time.Time) *float64 {
	life := probe.Validity{NotBefore: l.NotBefore, NotAfter: l.NotAfter}.Lifetime()
	if l.NotBefore.IsZero() || life <= 0 {
		return nil
	}
	pct := math.Round(float64(max(l.NotAfter.Sub(at), 0))/float64(life)*1000) / 10
	return &pct
}

func toWatch(r store.Record, last *probe.Report) Watch {
	w := Watch{
		ID:                  r.ID,
		Target:              r.Target,
		Schedule:            r.Schedule,
		ThresholdsDays:      slices.Clone(r.Thresholds),
		State:               r.State,
		ConsecutiveFailures: r.ConsecutiveFailures,
		LastReport:          last,
		CreatedAt:           r.CreatedAt.UTC(),
		FailureThreshold:    r.FailureThreshold,
		TimeoutMS:           r.TimeoutMS,
		Path:                r.Path,
		Scheme:              r.Scheme,
		ClientCert:          r.ClientCert,
		MCPLevel:            r.MCP,
		CreatedBy:           r.CreatedBy,
		ProbedBy:            r.ProbedBy,
		MCP:                 r.MCPInfo,
		MCPStats:            mcpStats(r.MCPRecent),
	}
	if pc := r.Probe; pc != nil {
		w.CARoots, w.TokenName = rootInfos(pc.Roots), pc.TokenName
		if p := pc.Policy; p.DenyPrivate || len(p.AllowCIDRs) > 0 || len(p.DenyCIDRs) > 0 {
			w.OutboundPolicy = &PolicyInfo{DenyPrivate: p.DenyPrivate, AllowCIDRs: p.AllowCIDRs, DenyCIDRs: p.DenyCIDRs}
		}
	}
	if w.State == "" {
		w.State = StatePending
	}
	if last != nil && last.Leaf != nil {
		w.LifetimeLeftPct = lifetimeLeftPct(last.Leaf, last.CheckedAt)
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
