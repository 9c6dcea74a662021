package watch

import (
	"errors"
	"fmt"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// load reads every record into memory. At 100,000 watches it interns the
// strings and threshold lists that repeat (one copy of each schedule, state
// word and threshold list instead of one per watch) and parses each
// distinct schedule once.
func (e *Engine) load() error {
	start := e.clock.Now()
	schedCache := make(map[string]Schedule)
	strs := make(map[string]string)
	intern := func(s string) string {
		if v, ok := strs[s]; ok {
			return v
		}
		strs[s] = s
		return s
	}
	thCache := make(map[string][]probe.Threshold)
	var bad int
	quarantined, err := e.st.ForEach(func(r store.Record) error {
		s, ok := schedCache[r.Schedule]
		if !ok {
			var err error
			if s, err = ParseSchedule(r.Schedule); err != nil {
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
		en := &entry{rec: r, sched: s, hash: idHash(r.ID), subject: recordSubject(&r)}
		e.entries[r.ID] = en
		e.byIdent[r.Identity()] = r.ID
		e.countLocked(en, 1)
		return nil
	})
	for _, q := range quarantined {
		e.log.Error("watch: a watch record does not decode; it was set aside (see tlswatch db check) and every other watch runs",
			"id", q.ID, "reason", q.Reason)
	}
	if errors.Is(err, store.ErrNotSetAside) {
		e.log.Error("watch: loaded every watch that decodes, but could not set the others aside", "err", err)
	} else if err != nil {
		return err
	}
	if bad > 0 {
		e.log.Warn("watches with unparseable schedules use the default", "count", bad, "default", DefaultSchedule)
	}
	e.log.Info("watch: loaded", "watches", len(e.entries), "elapsed", e.clock.Now().Sub(start))
	e.releaseMemory()
	return nil
}

// newEntry wraps a record read back from the Store.
func (e *Engine) newEntry(r store.Record) *entry {
	s, err := ParseSchedule(r.Schedule)
	if err != nil {
		s, _ = ParseSchedule(DefaultSchedule)
	}
	return &entry{rec: r, sched: s, hash: idHash(r.ID), subject: recordSubject(&r), recent: noFigures}
}

// insertLocked adds an entry to memory and, with a scheduler, to the
// schedule. Caller holds e.mu.
func (e *Engine) insertLocked(en *entry) {
	e.entries[en.rec.ID] = en
	e.countLocked(en, 1)
	e.byIdent[en.rec.Identity()] = en.rec.ID
	if !e.cfg.NoScheduler {
		e.heap.push(heapItem{at: e.firstFire(en, e.clock.Now()), e: en, gen: en.gen})
		e.poke()
	}
}

// dropLocked forgets a watch: its scheduled fires become stale and a probe
// in flight is not applied. Caller holds e.mu.
func (e *Engine) dropLocked(id string) {
	en, ok := e.entries[id]
	if !ok {
		return
	}
	en.removed = true
	en.gen++
	delete(e.entries, id)
	e.countLocked(en, -1)
	if ident := en.rec.Identity(); e.byIdent[ident] == id {
		delete(e.byIdent, ident)
	}
}
