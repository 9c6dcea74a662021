package store

import (
	"bytes"
	"fmt"
	"math/bits"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Resolution of a history query.
type Resolution string

// Resolutions.
const (
	ResolutionRaw  Resolution = "raw"  // one sample per probe
	ResolutionHour Resolution = "hour" // one aggregate per UTC hour with probes
	ResolutionDay  Resolution = "day"  // one aggregate per UTC day with probes
)

// HistoryQuery selects part of a watch's history. Callers validate it (the
// watch package owns the limits); the store takes it as given.
type HistoryQuery struct {
	// Since and Until bound the range [Since, Until); zero Since means as
	// far back as kept, zero Until means no upper bound.
	Since, Until time.Time
	// Resolution is raw (the default), hour or day.
	Resolution Resolution
	// Limit keeps the newest Limit points (samples or aggregates); 0 is no
	// limit.
	Limit int
	// MaxReports bounds Reports (the newest are kept); 0 means 100.
	MaxReports int
	// Checkpoints adds the daily checkpoint Reports of the range.
	Checkpoints bool
	// Now is when retention is measured from; zero means the store's
	// clock (Options.Now). The watcher passes its own clock's time.
	Now time.Time
}

// HistoryPage is the answer to a HistoryQuery. Lists are newest first.
type HistoryPage struct {
	Samples    []Sample    // at raw resolution
	Aggregates []Aggregate // at hour or day resolution
	// Summary merges the range's hourly aggregates (daily ones where hours
	// are no longer kept): probes, uptime and latency over the range.
	Summary Aggregate
	// Reports are the Reports stored at each change within the range of the
	// points returned and the one in force at its start (when did this
	// start?): every Report the samples name. With Checkpoints, also the
	// daily checkpoints of that range.
	Reports []StoredReport
	// StateSince is when the watch's current state (the last change) began;
	// zero before the first probe.
	StateSince time.Time
	// More is set when Limit or MaxReports cut the answer.
	More bool
}

// cutoffs are the oldest times (unix ms) each kind of history is kept from.
type cutoffs struct{ raw, hour, day, changes int64 }

func (db *DB) cutoffs(now time.Time) cutoffs {
	db.mu.Lock()
	r := db.ret
	db.mu.Unlock()
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	return cutoffs{raw: ms(r.Raw), hour: ms(r.Hour), day: ms(r.Day), changes: ms(r.Changes)}
}

// Query answers a history query for one watch. It returns ErrNotFound for
// an unknown watch.
func (db *DB) Query(id string, q HistoryQuery) (HistoryPage, error) {
	if q.MaxReports <= 0 {
		q.MaxReports = 100
	}
	var page HistoryPage
	err := db.readHistory(id, q, func(r *reader, hd *head) error {
		var err error
		page, err = r.page(q)
		if hd.changedAt != 0 {
			page.StateSince = time.Unix(0, hd.changedAt).UTC()
		}
		return err
	})
	if err != nil {
		return HistoryPage{}, fmt.Errorf("store: history of %s: %w", id, err)
	}
	return page, nil
}

// readHistory runs fn in a read transaction with a reader of the watch's
// history in q's range, converting schema-1 history first. fn is not called
// for a watch without history.
func (db *DB) readHistory(id string, q HistoryQuery, fn func(*reader, *head) error) error {
	if err := db.convertFirst(id); err != nil {
		return err
	}
	return db.bolt.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bWatches).Get([]byte(id)) == nil {
			return ErrNotFound
		}
		h, hd, err := openHead(tx, id)
		if err != nil || hd == nil {
			return err
		}
		now := q.Now
		if now.IsZero() {
			now = db.now()
		}
		return fn(&reader{h: h, wnum: hd.wnum, cut: db.cutoffs(now), since: msOrMin(q.Since), until: msOrMax(q.Until)}, hd)
	})
}

// convertFirst converts a watch's schema-1 history before it is read.
func (db *DB) convertFirst(id string) error {
	pending := false
	db.bolt.View(func(tx *bolt.Tx) error {
		pending = tx.Bucket(bHistory) != nil || tx.Bucket(bTransitions) != nil
		return nil
	})
	if !pending || db.bolt.IsReadOnly() {
		return nil
	}
	return db.bolt.Update(func(tx *bolt.Tx) error { return convertWatch(tx, id) })
}

func msOrMin(t time.Time) int64 {
	if t.IsZero() {
		return -1 << 62
	}
	return t.UnixMilli()
}

func msOrMax(t time.Time) int64 {
	if t.IsZero() {
		return 1 << 62
	}
	return t.UnixMilli()
}

type reader struct {
	h            *histTx
	wnum         uint32
	cut          cutoffs
	since, until int64 // ms, [since, until)
}

func (r *reader) page(q HistoryQuery) (HistoryPage, error) {
	var page HistoryPage
	var err error
	from := r.since // start of the points returned
	switch q.Resolution {
	case ResolutionHour, ResolutionDay:
		page.Aggregates, page.More, err = r.aggregates(q.Resolution == ResolutionDay, q.Limit)
		if n := len(page.Aggregates); n > 0 && page.More {
			from = page.Aggregates[n-1].Start.UnixMilli()
		}
	default:
		page.Samples, page.More, err = r.samples(q.Limit)
		if n := len(page.Samples); n > 0 && page.More {
			from = page.Samples[n-1].At.UnixMilli()
		}
	}
	if err != nil {
		return page, err
	}
	if page.Summary, err = r.summary(from); err != nil {
		return page, err
	}
	more := false
	page.Reports, more, err = r.reports(from, q.Checkpoints, q.MaxReports)
	page.More = page.More || more
	return page, err
}

// samples walks blocks from the newest back.
func (r *reader) samples(limit int) ([]Sample, bool, error) {
	lo := max(r.since, r.cut.raw)
	var out []Sample
	c := r.h.samples.Cursor()
	prefix := wnumPrefix(r.wnum)
	var block []rawSample
	for k, v := lastOfWatch(c, r.wnum); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
		if blockKeyMS(k) >= r.until {
			continue
		}
		block = block[:0]
		_, err := decodeBlock(blockKeyMS(k), v, func(s *rawSample) bool {
			if s.at >= lo && s.at < r.until {
				block = append(block, *s)
			}
			return true
		})
		if err != nil {
			continue // a damaged block is skipped, not fatal
		}
		for i := len(block) - 1; i >= 0; i-- {
			if limit > 0 && len(out) == limit {
				return out, true, nil
			}
			out = append(out, block[i].public())
		}
		if blockKeyMS(k) < lo {
			break
		}
	}
	return out, false, nil
}

// aggregates walks day values from the newest back.
func (r *reader) aggregates(daily bool, limit int) ([]Aggregate, bool, error) {
	var out []Aggregate
	c := r.h.aggs.Cursor()
	prefix := wnumPrefix(r.wnum)
	lo := max(r.since, r.cut.hour)
	if daily {
		lo = max(r.since, r.cut.day)
	}
	for k, raw := lastOfWatch(c, r.wnum); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Prev() {
		dayMS := aggKeyDay(k) * msPerDay
		if dayMS+msPerDay <= lo {
			break
		}
		if dayMS >= r.until {
			continue
		}
		v, err := decodeDayAggs(raw)
		if err != nil {
			return nil, false, err
		}
		if daily {
			if dayMS < lo {
				break
			}
			a := v.whole()
			if a.probes() == 0 {
				continue
			}
			if limit > 0 && len(out) == limit {
				return out, true, nil
			}
			s := a.summary()
			s.Start = time.UnixMilli(dayMS).UTC()
			out = append(out, s)
			continue
		}
		for h := 23; h >= 0; h-- {
			start := dayMS + int64(h)*msPerHour
			if v.mask&(1<<h) == 0 || start < lo || start >= r.until {
				continue
			}
			if limit > 0 && len(out) == limit {
				return out, true, nil
			}
			s := v.hours[h].summary()
			s.Start = time.UnixMilli(start).UTC()
			out = append(out, s)
		}
	}
	return out, false, nil
}

// summary merges the days that lie within [from, until) whole, and the
// kept hours that start in it on the days it cuts.
func (r *reader) summary(from int64) (Aggregate, error) {
	var total agg
	c := r.h.aggs.Cursor()
	prefix := wnumPrefix(r.wnum)
	for k, raw := c.Seek(aggKey(r.wnum, max(floorDiv(from, msPerDay), 0))); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
		dayMS := aggKeyDay(k) * msPerDay
		if dayMS >= r.until {
			break
		}
		v, err := decodeDayAggs(raw)
		if err != nil {
			return Aggregate{}, err
		}
		addRange(&total, &v, dayMS, from, r.until, r.cut)
	}
	s := total.summary()
	if from > -1<<61 {
		s.Start = time.UnixMilli(from).UTC()
	}
	return s, nil
}

func addRange(total *agg, v *dayAggs, dayMS, from, until int64, cut cutoffs) {
	if dayMS >= from && dayMS+msPerDay <= until && dayMS >= cut.day {
		w := v.whole()
		total.merge(&w)
		return
	}
	for m := v.mask; m != 0; m &= m - 1 {
		h := bits.TrailingZeros32(m)
		start := dayMS + int64(h)*msPerHour
		if start >= from && start < until && start >= cut.hour {
			total.merge(&v.hours[h])
		}
	}
}

// reports lists the stored Reports for the points from ms on, newest
// first: every change in [from, until) and the change in force at from,
// with checkpoints also the checkpoints in [from, until). Reports past their
// age (see prune.go) are left out.
func (r *reader) reports(from int64, checkpoints bool, maxN int) ([]StoredReport, bool, error) {
	var out []StoredReport
	bc := bodyCache{}
	c := r.h.changes.Cursor()
	prefix := wnumPrefix(r.wnum)
	nextAny, nextChange := int64(1<<62), int64(1<<62) // the newer entries seen
	for k, v := lastOfWatch(c, r.wnum); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
		ch, err := decodeChange(k, v)
		if err != nil {
			return nil, false, err
		}
		past := nextAny < r.cut.raw && (ch.kind == kindCheckpoint || nextChange < r.cut.changes)
		if past && nextChange < r.cut.changes {
			break // so is every older one
		}
		nextAny = ch.at
		if ch.kind == kindChange {
			nextChange = ch.at
		}
		if past || ch.at >= r.until {
			continue
		}
		inForce := ch.at < from
		if ch.kind == kindCheckpoint && (inForce || !checkpoints) {
			continue
		}
		if len(out) == maxN {
			return out, true, nil
		}
		sr, err := ch.stored(r.h.bodies, r.wnum, bc)
		if err != nil {
			return nil, false, err
		}
		out = append(out, sr)
		if inForce {
			break // the change in force at from
		}
	}
	return out, false, nil
}
