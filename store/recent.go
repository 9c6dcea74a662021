package store

import (
	"bytes"
	"fmt"
	"math/bits"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Recent is a watch's uptime and latency over the last day and month, as
// list_watches and the metrics show them. The windows are whole buckets:
// Day merges the 24 UTC hours ending with the current one, Month the 30 UTC
// days ending with today (both include the period in progress).
type Recent struct {
	Day, Month Aggregate
}

// RecentOf computes Recent at now (zero: the store's clock) for each id
// that has history (ids without are left out), each watch with one cursor
// seek over its last 30 day values. It reads, at 100,000 watches, for a few
// seconds: callers cache it.
func (db *DB) RecentOf(ids []string, now time.Time) (map[string]Recent, error) {
	if now.IsZero() {
		now = db.now()
	}
	cut := db.cutoffs(now)
	out := make(map[string]Recent, len(ids))
	err := db.bolt.View(func(tx *bolt.Tx) error {
		h, err := openHist(tx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			hd, err := h.head(id, false)
			if err != nil {
				return fmt.Errorf("watch %s: %w", id, err)
			}
			if hd == nil {
				continue
			}
			r, err := recentOf(h.aggs, hd.wnum, now, cut)
			if err != nil {
				return fmt.Errorf("watch %s: %w", id, err)
			}
			out[id] = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: recent history: %w", err)
	}
	return out, nil
}

func recentOf(b *bolt.Bucket, wnum uint32, now time.Time, cut cutoffs) (Recent, error) {
	nowMS := now.UnixMilli()
	today := floorDiv(nowMS, msPerDay)
	hourFrom := (floorDiv(nowMS, msPerHour) - 23) * msPerHour
	monthFrom := (today - 29) * msPerDay
	var day, month agg
	prefix := wnumPrefix(wnum)
	c := b.Cursor()
	for k, raw := c.Seek(aggKey(wnum, today-29)); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
		dayMS := aggKeyDay(k) * msPerDay
		if dayMS > nowMS {
			break
		}
		v, err := decodeDayAggs(raw)
		if err != nil {
			return Recent{}, err
		}
		if dayMS >= max(monthFrom, cut.day) {
			w := v.whole()
			month.merge(&w)
		}
		for m := v.mask; m != 0; m &= m - 1 {
			hr := bits.TrailingZeros32(m)
			if start := dayMS + int64(hr)*msPerHour; start >= max(hourFrom, cut.hour) && start <= nowMS {
				day.merge(&v.hours[hr])
			}
		}
	}
	r := Recent{Day: day.summary(), Month: month.summary()}
	r.Day.Start, r.Month.Start = time.UnixMilli(hourFrom).UTC(), time.UnixMilli(monthFrom).UTC()
	return r, nil
}
