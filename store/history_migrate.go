package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

// Schemas 1 to 3 kept a JSON Report per probe ("history", the last 500 per
// watch) and per status transition ("transitions"). Moving to schema 4
// creates the
// history buckets and leaves those two in place; their contents are then
// converted watch by watch, each watch in one short transaction that also
// deletes what it converted, so that:
//
//   - opening a large file is instant and the watcher starts at once;
//   - the conversion runs in the background in bounded batches
//     (ConvertHistory), between the watcher's own commits;
//   - a watch that is written (Apply) or read (Query) before its turn is
//     converted first, in that transaction, so its history stays in order;
//   - a crash loses nothing and repeats nothing: what is left in the old
//     buckets is exactly what remains to convert, and meta records it.
var kConverting = []byte("history_converting")

// migrateHistoryBuckets is the schema step 3 -> 4.
func migrateHistoryBuckets(tx *bolt.Tx) error {
	for _, b := range histBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	return finishConversion(tx)
}

// finishConversion drops the schema-1 buckets once they are empty, and
// otherwise marks the conversion as pending in meta.
func finishConversion(tx *bolt.Tx) error {
	pending := false
	for _, name := range [][]byte{bHistory, bTransitions} {
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		if k, _ := b.Cursor().First(); k != nil {
			pending = true
			continue
		}
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("drop bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bMeta)
	if pending {
		return meta.Put(kConverting, []byte{1})
	}
	return meta.Delete(kConverting)
}

type oldEntry struct {
	at         uint64 // key time, unix ns
	raw        []byte
	transition bool
}

// convertWatch replays one watch's schema-1 history into the new layout, in
// time order, and deletes it. It does nothing once converted.
func convertWatch(tx *bolt.Tx, id string) error {
	prefix := []byte(id + "/")
	var entries []oldEntry
	for _, name := range [][]byte{bHistory, bTransitions} {
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			entries = append(entries, oldEntry{binary.BigEndian.Uint64(k[len(prefix):]), v, bytes.Equal(name, bTransitions)})
		}
	}
	if len(entries) == 0 {
		return nil
	}
	// A quarantined record keeps its history (aged out by retention) as it
	// keeps its alert state; history of a removed watch goes.
	if tx.Bucket(bWatches).Get([]byte(id)) != nil || quarantined(tx, id) {
		if err := replayOld(tx, id, entries); err != nil {
			return fmt.Errorf("convert history of %s: %w", id, err)
		}
	}
	for _, name := range [][]byte{bHistory, bTransitions} {
		if b := tx.Bucket(name); b != nil {
			if err := deletePrefix(b, prefix); err != nil {
				return err
			}
		}
	}
	return nil
}

func quarantined(tx *bolt.Tx, id string) bool {
	q := tx.Bucket(bQuarantine)
	return q != nil && q.Get([]byte(id)) != nil
}

func replayOld(tx *bolt.Tx, id string, entries []oldEntry) error {
	// A transition was written to both buckets under the same key.
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].at < entries[j].at })
	merged := entries[:0]
	for _, e := range entries {
		if n := len(merged); n > 0 && merged[n-1].at == e.at {
			merged[n-1].transition = merged[n-1].transition || e.transition
			continue
		}
		merged = append(merged, e)
	}
	h, err := openHist(tx)
	if err != nil {
		return err
	}
	hd, err := h.head(id, true)
	if err != nil {
		return err
	}
	for _, e := range merged {
		var rep probe.Report
		if err := json.Unmarshal(e.raw, &rep); err != nil {
			continue // an unreadable Report was unreadable before too
		}
		if err := h.record(hd, &rep, e.transition); err != nil {
			return err
		}
	}
	// The newest Report is the newest history entry (transitions are also
	// history entries when they are recent).
	if err := h.last.Put([]byte(id), append([]byte(nil), merged[len(merged)-1].raw...)); err != nil {
		return err
	}
	return h.putHead(id, hd)
}

// ConvertHistory converts schema-1 history in batches of about batch Reports
// per transaction (0 means 2,000, some 50 ms of work), until none is left or
// ctx ends. It reports whether any is left. Safe to run while the watcher
// writes: each batch is one short transaction.
func (db *DB) ConvertHistory(ctx context.Context, batch int) (bool, error) {
	if batch <= 0 {
		batch = 2000
	}
	for {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		left := false
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			var err error
			left, err = convertBatch(tx, batch)
			return err
		})
		if err != nil {
			return true, fmt.Errorf("store: convert history of %s: %w", db.path, err)
		}
		if !left {
			return false, nil
		}
	}
}

func convertBatch(tx *bolt.Tx, batch int) (bool, error) {
	done := 0
	for done < batch {
		id, ok, err := nextOldID(tx)
		if err != nil {
			return true, err
		}
		if !ok {
			return false, finishConversion(tx)
		}
		n := countPrefix(tx, id)
		if err := convertWatch(tx, id); err != nil {
			return true, err
		}
		done += n
	}
	return true, nil
}

// nextOldID is the smallest watch id left in the schema-1 buckets. A key
// that names no watch (not written by tlswatch) is dropped.
func nextOldID(tx *bolt.Tx) (string, bool, error) {
	for {
		var best []byte
		var in *bolt.Bucket
		for _, name := range [][]byte{bHistory, bTransitions} {
			b := tx.Bucket(name)
			if b == nil {
				continue
			}
			if k, _ := b.Cursor().First(); k != nil && (best == nil || bytes.Compare(k, best) < 0) {
				best, in = k, b
			}
		}
		if best == nil {
			return "", false, nil
		}
		if len(best) >= 9 && best[len(best)-9] == '/' {
			return string(best[:len(best)-9]), true, nil
		}
		if err := in.Delete(append([]byte(nil), best...)); err != nil {
			return "", false, err
		}
	}
}

func countPrefix(tx *bolt.Tx, id string) int {
	n := 0
	prefix := []byte(id + "/")
	for _, name := range [][]byte{bHistory, bTransitions} {
		if b := tx.Bucket(name); b != nil {
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
			}
		}
	}
	return n
}
