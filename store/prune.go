package store

import (
	"bytes"
	"context"
	"fmt"
	"math/bits"
	"time"

	bolt "go.etcd.io/bbolt"
)

// What is past its age, at time now, with r = the retention:
//
//   - a sample older than now - r.Raw;
//   - an hourly aggregate whose hour starts before now - r.Hour, a daily
//     one whose day starts before now - r.Day (a day outlives its hours
//     when r.Day > r.Hour: it is rolled up from them first);
//   - a stored Report once it has been superseded for longer than its
//     retention: a checkpoint when the next stored Report is older than
//     now - r.Raw; a change when, besides, the next change is older than
//     now - r.Changes (so a kept sample never names a pruned change). The
//     Report in force (the newest) is never past its age: "since when"
//     always has an answer.
//
// Reads apply the same rules, so nothing past its age is ever returned;
// Prune deletes it so that bbolt can reuse its pages and the file stops
// growing once retention is reached.

// PruneStats counts what one Prune deleted.
type PruneStats struct {
	Watches      int // watches visited
	Batches      int // transactions
	Samples      int // samples deleted
	Blocks       int // sample blocks deleted or rewritten
	Hours        int // hourly aggregates deleted
	Days         int // day values deleted or rewritten
	Reports      int // stored Reports (change entries) deleted
	Bodies       int // Report bodies deleted
	LiveBytes    int64
	BudgetActive bool // the size budget shortened the retention
}

// Prune deletes what is past its age, visiting watches in transactions of
// at most batch watches (0: 200), so that the watcher's commits get in
// between. It also continues a pending schema-1 conversion first. When a
// size budget is set and the live data exceeds it after the pass, the
// retention of raw samples (then of hourly aggregates) is shortened for
// later passes and reads, never below one day.
func (db *DB) Prune(ctx context.Context, batch int) (PruneStats, error) {
	var st PruneStats
	if _, err := db.ConvertHistory(ctx, 0); err != nil {
		return st, err
	}
	if batch <= 0 {
		batch = 200
	}
	cut := db.cutoffs(db.now())
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		done := false
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			var err error
			after, done, err = pruneBatch(tx, after, batch, cut, &st)
			return err
		})
		if err != nil {
			return st, fmt.Errorf("store: prune %s: %w", db.path, err)
		}
		st.Batches++
		if done {
			break
		}
	}
	live, err := db.liveBytes()
	if err != nil {
		return st, err
	}
	st.LiveBytes = live
	st.BudgetActive = db.adjustBudget(live)
	return st, nil
}

func pruneBatch(tx *bolt.Tx, after []byte, batch int, cut cutoffs, st *PruneStats) ([]byte, bool, error) {
	h, err := openHist(tx)
	if err != nil {
		return nil, true, err
	}
	c := h.heads.Cursor()
	k, v := c.First()
	if after != nil {
		k, v = c.Seek(after)
		if k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	for n := 0; k != nil && n < batch; k, v = c.Next() {
		hd, err := decodeHead(v)
		if err != nil {
			return nil, true, fmt.Errorf("watch %s: %w", k, err)
		}
		if err := pruneWatch(h, hd, cut, st); err != nil {
			return nil, true, fmt.Errorf("watch %s: %w", k, err)
		}
		after = append(after[:0], k...)
		st.Watches++
		n++
	}
	return after, k == nil, nil
}

func pruneWatch(h *histTx, hd *head, cut cutoffs, st *PruneStats) error {
	if err := pruneSamples(h.samples, hd.wnum, cut.raw, st); err != nil {
		return fmt.Errorf("prune samples: %w", err)
	}
	if err := pruneAggs(h.aggs, hd.wnum, cut, st); err != nil {
		return fmt.Errorf("prune aggregates: %w", err)
	}
	n, err := pruneChanges(h.changes, hd.wnum, cut)
	if err != nil {
		return fmt.Errorf("prune reports: %w", err)
	}
	st.Reports += n
	if n > 0 {
		m, err := collectBodies(h, hd)
		if err != nil {
			return fmt.Errorf("prune report bodies: %w", err)
		}
		st.Bodies += m
	}
	return nil
}

// pruneSamples deletes the blocks wholly before cutoff and rewrites the one
// that straddles it.
func pruneSamples(b *bolt.Bucket, wnum uint32, cutoff int64, st *PruneStats) error {
	prefix := wnumPrefix(wnum)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && blockKeyMS(k) < cutoff; k, v = c.Seek(prefix) {
		var kept []rawSample
		dropped := 0
		if _, err := decodeBlock(blockKeyMS(k), v, func(s *rawSample) bool {
			if s.at >= cutoff {
				kept = append(kept, *s)
			} else {
				dropped++
			}
			return true
		}); err != nil {
			kept = nil // a damaged block goes
		}
		st.Samples += dropped
		st.Blocks++
		if err := c.Delete(); err != nil {
			return err
		}
		if len(kept) == 0 {
			continue
		}
		nb, bs := newBlock(kept[0])
		for _, s := range kept[1:] {
			nb = bs.appendSample(nb, s)
		}
		return b.Put(blockKey(wnum, kept[0].at), nb)
	}
	return nil
}

// pruneAggs drops hours and days past their age, rolling a day up from its
// hours before the first of them goes while the day itself is kept.
func pruneAggs(b *bolt.Bucket, wnum uint32, cut cutoffs, st *PruneStats) error {
	prefix := wnumPrefix(wnum)
	type put struct {
		k []byte
		v []byte // nil: delete
	}
	var puts []put
	c := b.Cursor()
	for k, raw := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
		dayMS := aggKeyDay(k) * msPerDay
		if dayMS >= cut.hour && dayMS >= cut.day {
			break
		}
		v, err := decodeDayAggs(raw)
		if err != nil {
			puts = append(puts, put{k: append([]byte(nil), k...)})
			continue
		}
		var drop uint32
		for m := v.mask; m != 0; m &= m - 1 {
			if hr := bits.TrailingZeros32(m); dayMS+int64(hr)*msPerHour < cut.hour {
				drop |= 1 << hr
			}
		}
		dayLive := dayMS >= cut.day
		if drop == 0 && (dayLive || !v.dayOK) && (dayLive || v.mask != 0) {
			continue
		}
		if dayLive && !v.dayOK && drop != 0 {
			v.day, v.dayOK = v.whole(), true
		}
		if !dayLive {
			v.dayOK = false
		}
		for m := drop; m != 0; m &= m - 1 {
			v.hours[bits.TrailingZeros32(m)] = agg{}
		}
		v.mask &^= drop
		st.Hours += bits.OnesCount32(drop)
		st.Days++
		p := put{k: append([]byte(nil), k...)}
		if v.mask != 0 || v.dayOK {
			p.v = v.encode()
		}
		puts = append(puts, p)
	}
	for _, p := range puts {
		var err error
		if p.v == nil {
			err = b.Delete(p.k)
		} else {
			err = b.Put(p.k, p.v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

type entryMeta struct {
	k    []byte
	at   int64
	kind byte
}

// pruneChanges deletes the stored Reports past their age (see the rules
// above) and returns how many.
func pruneChanges(b *bolt.Bucket, wnum uint32, cut cutoffs) (int, error) {
	prefix := wnumPrefix(wnum)
	limit := max(cut.raw, cut.changes)
	var es []entryMeta
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) == 0 {
			continue
		}
		es = append(es, entryMeta{k: append([]byte(nil), k...), at: blockKeyMS(k), kind: v[0]})
		if blockKeyMS(k) >= limit {
			break // the first one beyond only tells when the others ended
		}
	}
	n := 0
	for i, e := range es {
		if pastAge(es, i, cut) {
			if err := b.Delete(e.k); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// pastAge applies the rules above to es[i], es being in time order and
// complete from es[i] up to at least one entry past the cutoffs.
func pastAge(es []entryMeta, i int, cut cutoffs) bool {
	if i+1 >= len(es) {
		return false // nothing supersedes it (in view)
	}
	if es[i+1].at >= cut.raw {
		return false // kept samples may refer to it
	}
	if es[i].kind == kindCheckpoint {
		return true
	}
	for _, e := range es[i+1:] {
		if e.kind == kindChange {
			return e.at < cut.changes
		}
	}
	return false
}

// collectBodies deletes the bodies no stored Report and no head field refers
// to (directly or as a checkpoint's base).
func collectBodies(h *histTx, hd *head) (int, error) {
	live := map[ref]bool{hd.body: true, hd.keyBody: true, hd.change: true}
	prefix := wnumPrefix(hd.wnum)
	c := h.changes.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) >= 9 {
			var r ref
			copy(r[:], v[1:9])
			live[r] = true
		}
	}
	for r := range live {
		if v := h.bodies.Get(bodyKey(hd.wnum, r)); v != nil {
			if base, err := bodyBase(v); err == nil && base != (ref{}) {
				live[base] = true
			}
		}
	}
	var dead [][]byte
	bc := h.bodies.Cursor()
	for k, _ := bc.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = bc.Next() {
		var r ref
		copy(r[:], k[4:])
		if !live[r] {
			dead = append(dead, append([]byte(nil), k...))
		}
	}
	for _, k := range dead {
		if err := h.bodies.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(dead), nil
}

// liveBytes is the file's size less its free pages.
func (db *DB) liveBytes() (int64, error) {
	var size int64
	if err := db.bolt.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		return 0, err
	}
	s := db.bolt.Stats()
	return size - int64(s.FreeAlloc), nil
}

// adjustBudget shortens (or relaxes back toward the configured values) the
// retention of raw samples, then hourly aggregates, to keep live bytes under
// the budget. It reports whether the budget is shortening anything.
func (db *DB) adjustBudget(live int64) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	conf := db.conf
	if conf.MaxBytes <= 0 {
		return false
	}
	r := db.ret
	switch {
	case live > conf.MaxBytes:
		f := float64(conf.MaxBytes) / float64(live) * 0.95
		if r.Raw > day {
			r.Raw = max(day, time.Duration(float64(r.Raw)*f).Truncate(time.Hour))
		} else {
			r.Hour = max(day, time.Duration(float64(r.Hour)*f).Truncate(time.Hour))
		}
	case live < conf.MaxBytes*8/10:
		r.Hour = min(conf.Hour, r.Hour*11/10)
		if r.Hour == conf.Hour {
			r.Raw = min(conf.Raw, r.Raw*11/10)
		}
	}
	db.ret = r
	return r != conf
}

// RunPruner prunes every interval (0: one hour) until ctx ends, the first
// time after min(interval, PruneStartDelay) so that a process starting at
// 100,000 watches is not slowed by a pass over all of them; it reports each
// pass's outcome to report (which may be nil). Only the process that owns
// the file runs it.
func (db *DB) RunPruner(ctx context.Context, interval time.Duration, report func(PruneStats, error)) {
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTimer(min(interval, PruneStartDelay))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := db.Prune(ctx, 0)
		if ctx.Err() != nil {
			return
		}
		if st.Watches > 1000 {
			db.ReleaseMemory() // the pass read pages all over the file
		}
		if report != nil {
			report(st, err)
		}
		t.Reset(interval)
	}
}

// PruneStartDelay is the longest RunPruner waits before its first pass.
const PruneStartDelay = 2 * time.Minute
