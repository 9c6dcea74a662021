package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxProblems bounds the problems a check lists; a badly damaged file can
// have thousands, and the first few say enough.
const maxProblems = 20

// CheckReport is what Check found in a database file.
type CheckReport struct {
	Path      string `json:"path"`
	Schema    int    `json:"schema"`
	Watches   int    `json:"watches"`
	FileBytes int64  `json:"file_bytes"`
	// Problems lists the damage found (bbolt's consistency check, pages that
	// cannot be read), at most maxProblems; More counts the rest. Empty
	// when the file is whole.
	Problems []string `json:"problems,omitempty"`
	More     int      `json:"more_problems,omitempty"`
	// Undecodable lists the ids of watch records that do not decode: the
	// file is whole, but those watches cannot be loaded.
	Undecodable []string `json:"undecodable,omitempty"`
	// Quarantined lists the records that loading set aside because they
	// did not decode (see quarantine.go).
	Quarantined []Quarantined `json:"quarantined,omitempty"`
	// Warnings are damage bbolt works around on its own (one of its two
	// meta pages).
	Warnings []string      `json:"warnings,omitempty"`
	Elapsed  time.Duration `json:"-"`
}

// Damaged reports whether the check found damage.
func (r *CheckReport) Damaged() bool { return len(r.Problems) > 0 }

func (r *CheckReport) problem(p string) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, p)
		return
	}
	r.More++
}

// CheckFile checks the database at path: it reads every page of every
// bucket (so that a page bbolt cannot read is found here, contained, rather
// than at run time), runs bbolt's consistency check (tx.Check: page
// references, free pages, key order), and decodes every watch record. Damage
// is reported in CheckReport.Problems, not as an error; the error is for a
// file that could not be checked at all: ErrLocked while a process holds it
// for writing, ErrNotDatabase, or a missing file.
func CheckFile(path string, timeout time.Duration) (CheckReport, error) {
	start := time.Now()
	rep := CheckReport{Path: path}
	if fi, err := os.Stat(path); err == nil {
		rep.FileBytes = fi.Size()
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	b, err := openBolt(path, &bolt.Options{Timeout: timeout, ReadOnly: true, PreLoadFreelist: true, FreelistType: bolt.FreelistMapType}, nil)
	var d *DamageError
	if errors.As(err, &d) {
		rep.problem(d.Detail)
		rep.Elapsed = time.Since(start)
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	defer b.close()
	b.check(&rep)
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// check fills rep from the open file.
func (b *boltDB) check(rep *CheckReport) {
	badMeta := metaDamage(b.path)
	if badMeta != "" {
		rep.Warnings = append(rep.Warnings, badMeta+"; bbolt reads the other copy and rewrites this one within two writes (bbolt's consistency check needs both, so it was skipped)")
	}
	err := b.View(func(tx *bolt.Tx) error {
		// Every page first, in this goroutine where a fault is contained:
		// tx.Check reads pages on a goroutine of its own.
		if err := tx.ForEach(func(_ []byte, bk *bolt.Bucket) error { readBucket(bk); return nil }); err != nil {
			return err
		}
		if badMeta == "" {
			for err := range tx.Check() {
				rep.problem(strings.TrimPrefix(err.Error(), "panic: "))
			}
		}
		if !rep.Damaged() {
			checkRecords(tx, rep)
		}
		return nil
	})
	var d *DamageError
	if errors.As(err, &d) {
		rep.problem(d.Detail)
	} else if err != nil {
		rep.problem(err.Error())
	}
}

// checkRecords reads the schema version and decodes every watch record.
func checkRecords(tx *bolt.Tx, rep *CheckReport) {
	if m := tx.Bucket(bMeta); m != nil {
		if raw := m.Get(kSchema); len(raw) == 4 {
			rep.Schema = int(binary.BigEndian.Uint32(raw))
		}
	}
	if q, err := readQuarantine(tx); err == nil {
		rep.Quarantined = q
	}
	w := tx.Bucket(bWatches)
	if w == nil {
		return
	}
	_ = w.ForEach(func(k, v []byte) error {
		var r Record
		if decodeRecord(v, &r) != nil {
			rep.Undecodable = append(rep.Undecodable, string(k))
			return nil
		}
		rep.Watches++
		return nil
	})
}

// readBucket reads every key and value of bk and its nested buckets, one
// byte per page of each value, so that every page they live on is visited.
func readBucket(bk *bolt.Bucket) {
	c := bk.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if nb := bk.Bucket(k); nb != nil {
				readBucket(nb)
			}
			continue
		}
		var sum byte
		for i := 0; i < len(v); i += 4096 {
			sum ^= v[i]
		}
		if len(v) > 0 {
			sum ^= v[len(v)-1]
		}
		runtime.KeepAlive(sum) // the reads are the point
	}
}

// Check checks this open database as CheckFile does. With the file open
// for writing it runs in a read transaction beside the writer.
func (db *DB) Check() CheckReport {
	start := time.Now()
	rep := CheckReport{Path: db.path}
	if fi, err := os.Stat(db.path); err == nil {
		rep.FileBytes = fi.Size()
	}
	db.bolt.check(&rep)
	rep.Elapsed = time.Since(start)
	return rep
}

// String is the report as one line.
func (r *CheckReport) String() string {
	switch {
	case r.Damaged():
		n := len(r.Problems) + r.More
		return fmt.Sprintf("%s: damaged, %d problem%s found", r.Path, n, map[bool]string{true: "s"}[n > 1])
	case len(r.Undecodable) > 0 || len(r.Quarantined) > 0:
		return fmt.Sprintf("%s: whole, schema %d, %d watches, %d records that do not decode, %d quarantined", r.Path, r.Schema, r.Watches, len(r.Undecodable), len(r.Quarantined))
	case len(r.Warnings) > 0:
		return fmt.Sprintf("%s: usable, schema %d, %d watches, %d warnings", r.Path, r.Schema, r.Watches, len(r.Warnings))
	}
	return fmt.Sprintf("%s: ok, schema %d, %d watches, %.1f MB", r.Path, r.Schema, r.Watches, float64(r.FileBytes)/1e6)
}
