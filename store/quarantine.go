package store

// A watch record that does not decode must not stop the others from
// loading: one bad record (written by a buggier binary, or a bit flipped on
// disk) used to fail the whole load, and then nothing was probed for
// anyone. Loading sets such a record aside instead:
//
//	quarantine  id -> Quarantined (JSON: the record's bytes as found, why, when)
//
// The record leaves the watches bucket and the target, expiry and down
// indexes (so no list shows it and adding its target again makes a new
// watch); its history and alert state stay under its id, so nothing about it
// is lost. `tlswatch db check` lists what the quarantine holds.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bQuarantine = []byte("quarantine")

// releaseScanEvery paces the unmapping of the file during ForEach.
const releaseScanEvery = 10_000

// ErrNotSetAside: ForEach loaded every record that decodes, but could not
// write the quarantine of those that do not (they stay where they are,
// and are met again at the next load).
var ErrNotSetAside = errors.New("store: records that do not decode could not be set aside")

// migrateQuarantine is the step to schema 3: the quarantine bucket.
func migrateQuarantine(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bQuarantine); err != nil {
		return fmt.Errorf("create bucket %s: %w", bQuarantine, err)
	}
	return nil
}

// Quarantined is a watch record set aside because it does not decode.
type Quarantined struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Record is the record's bytes as they were found (empty in lists).
	Record []byte `json:"record,omitempty"`
}

// ForEach calls fn with every record that decodes, in id order (the
// watcher loads its memory this way). A record that does not decode is
// quarantined (see above), unless the file is open read-only, and returned;
// the others are loaded all the same (a failure to write the quarantine is
// ErrNotSetAside, after every good record was loaded). fn must not call
// back into the DB.
func (db *DB) ForEach(fn func(Record) error) ([]Quarantined, error) {
	var bad []Quarantined
	err := db.bolt.View(func(tx *bolt.Tx) error {
		n := 0
		return tx.Bucket(bWatches).ForEach(func(k, v []byte) error {
			// Records share pages with history, and every page fault maps
			// its neighbours too: unmap as the scan goes, or reading
			// 100,000 records maps most of the file (ReleaseMemory).
			if n++; n%releaseScanEvery == 0 {
				_ = db.releaseMapping(tx)
			}
			var r Record
			if err := decodeRecord(v, &r); err != nil {
				bad = append(bad, Quarantined{ID: string(k), Reason: err.Error(), Record: bytes.Clone(v)})
				return nil
			}
			return fn(r)
		})
	})
	if err != nil || len(bad) == 0 || db.bolt.IsReadOnly() {
		return bad, err
	}
	if err := db.quarantine(bad, time.Now().UTC()); err != nil {
		return bad, fmt.Errorf("%w (%d): %w", ErrNotSetAside, len(bad), err)
	}
	return bad, nil
}

// quarantine moves the records out of the watches bucket and the indexes
// into the quarantine bucket, in one transaction. A record rewritten since
// it was read (it decodes now) stays.
func (db *DB) quarantine(bad []Quarantined, at time.Time) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		watches, q := tx.Bucket(bWatches), tx.Bucket(bQuarantine)
		moved := map[string]bool{}
		for i := range bad {
			b := &bad[i]
			b.At = at
			if !bytes.Equal(watches.Get([]byte(b.ID)), b.Record) {
				continue
			}
			raw, err := json.Marshal(b)
			if err != nil {
				return err
			}
			if err := q.Put([]byte(b.ID), raw); err != nil {
				return err
			}
			if err := watches.Delete([]byte(b.ID)); err != nil {
				return err
			}
			if err := tx.Bucket(bDown).Delete([]byte(b.ID)); err != nil {
				return err
			}
			moved[b.ID] = true
		}
		return dropIndexEntries(tx, moved)
	})
}

// dropIndexEntries removes the target and expiry index entries of the
// given watches. Their records cannot be decoded, so their keys are not
// known: both indexes are scanned (rare, and only at load).
func dropIndexEntries(tx *bolt.Tx, ids map[string]bool) error {
	if len(ids) == 0 {
		return nil
	}
	var dead [][]byte
	_ = tx.Bucket(bTargets).ForEach(func(k, v []byte) error {
		if ids[string(v)] {
			dead = append(dead, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range dead {
		if err := tx.Bucket(bTargets).Delete(k); err != nil {
			return err
		}
	}
	dead = dead[:0]
	_ = tx.Bucket(bExpiry).ForEach(func(k, _ []byte) error {
		if len(k) > 8 && ids[string(k[8:])] {
			dead = append(dead, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range dead {
		if err := tx.Bucket(bExpiry).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// readQuarantine lists the quarantined records (without their bytes);
// nil when the file has no quarantine bucket (an older schema).
func readQuarantine(tx *bolt.Tx) ([]Quarantined, error) {
	b := tx.Bucket(bQuarantine)
	if b == nil {
		return nil, nil
	}
	var out []Quarantined
	err := b.ForEach(func(k, v []byte) error {
		q := Quarantined{ID: string(k)}
		if err := json.Unmarshal(v, &q); err != nil {
			q.Reason = "quarantine entry unreadable: " + err.Error()
		}
		q.ID, q.Record = string(k), nil
		out = append(out, q)
		return nil
	})
	return out, err
}

// Quarantine lists the records set aside because they did not decode.
func (db *DB) Quarantine() ([]Quarantined, error) {
	var out []Quarantined
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		out, err = readQuarantine(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: read the quarantine: %w", err)
	}
	return out, nil
}
