package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Usage is what the file holds and what it costs: `tlswatch db stats`.
type Usage struct {
	Path   string `json:"path"`
	Schema int    `json:"schema"`
	// FileBytes is the size on disk; DataBytes the part in use up to the
	// highest page; FreeBytes the free pages within it, which bbolt
	// reuses before it grows the file (compact gives them back).
	FileBytes int64 `json:"file_bytes"`
	DataBytes int64 `json:"data_bytes"`
	FreeBytes int64 `json:"free_bytes"`
	PageSize  int   `json:"page_size"`

	Watches   int    `json:"watches"`
	Retention string `json:"retention"` // as configured
	// Converting is set while schema-1 history is still being converted.
	Converting bool `json:"converting,omitempty"`

	Samples        int       `json:"samples"`
	OldestSample   time.Time `json:"oldest_sample,omitzero"`
	NewestSample   time.Time `json:"newest_sample,omitzero"`
	HourAggregates int       `json:"hour_aggregates"`
	DayAggregates  int       `json:"day_aggregates"` // days whose hours are pruned
	Changes        int       `json:"changes"`        // Reports stored at a change
	Checkpoints    int       `json:"checkpoints"`    // daily checkpoint Reports
	ReportBodies   int       `json:"report_bodies"`  // distinct contents stored

	Buckets []BucketUsage `json:"buckets"`
}

// BucketUsage is one top-level bucket.
type BucketUsage struct {
	Name string `json:"name"`
	Keys int    `json:"keys"`
	// Bytes in use by its pages (keys, values and page headers) and bytes
	// its pages take (in use or not).
	InUseBytes int64 `json:"in_use_bytes"`
	AllocBytes int64 `json:"alloc_bytes"`
}

// Usage reads the whole file once (one read transaction; a few seconds for
// gigabytes).
func (db *DB) Usage() (Usage, error) {
	u := Usage{Path: db.path, Retention: db.conf.String()}
	if st, err := os.Stat(db.path); err == nil {
		u.FileBytes = st.Size()
	}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		u.DataBytes = tx.Size()
		u.PageSize = db.bolt.Info().PageSize
		if meta := tx.Bucket(bMeta); meta != nil {
			u.Converting = meta.Get(kConverting) != nil
			if raw := meta.Get(kSchema); len(raw) == 4 {
				u.Schema = int(binary.BigEndian.Uint32(raw))
			}
		}
		if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			s := b.Stats()
			u.Buckets = append(u.Buckets, BucketUsage{Name: string(name), Keys: s.KeyN,
				InUseBytes: int64(s.BranchInuse + s.LeafInuse + s.InlineBucketInuse),
				AllocBytes: int64(s.BranchAlloc + s.LeafAlloc)})
			return nil
		}); err != nil {
			return err
		}
		if b := tx.Bucket(bWatches); b != nil {
			u.Watches = b.Stats().KeyN
		}
		h, err := openHist(tx)
		if err != nil {
			return nil // a file not yet migrated (read-only open) has no history to count
		}
		return u.countHistory(h)
	})
	u.FreeBytes = int64(db.bolt.Stats().FreeAlloc)
	if err != nil {
		return Usage{}, fmt.Errorf("store: read usage of %s: %w", db.path, err)
	}
	return u, nil
}

func (u *Usage) countHistory(h *histTx) error {
	oldest, newest := int64(1<<62), int64(-1<<62)
	if err := h.samples.ForEach(func(k, v []byte) error {
		st, err := decodeBlock(blockKeyMS(k), v, nil)
		if err != nil {
			return nil // damaged blocks are skipped by readers too
		}
		u.Samples += st.n
		oldest, newest = min(oldest, blockKeyMS(k)), max(newest, st.last.at)
		return nil
	}); err != nil {
		return err
	}
	if u.Samples > 0 {
		u.OldestSample, u.NewestSample = time.UnixMilli(oldest).UTC(), time.UnixMilli(newest).UTC()
	}
	if err := h.aggs.ForEach(func(k, v []byte) error {
		d, err := decodeDayAggs(v)
		if err != nil {
			return nil
		}
		for m := d.mask; m != 0; m &= m - 1 {
			u.HourAggregates++
		}
		if d.dayOK {
			u.DayAggregates++
		}
		return nil
	}); err != nil {
		return err
	}
	if err := h.changes.ForEach(func(k, v []byte) error {
		if len(v) > 0 && v[0] == kindCheckpoint {
			u.Checkpoints++
		} else {
			u.Changes++
		}
		return nil
	}); err != nil {
		return err
	}
	u.ReportBodies = h.bodies.Stats().KeyN
	return nil
}

// String is the text form of `tlswatch db stats`.
func (u Usage) String() string {
	var b bytes.Buffer
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	fmt.Fprintf(&b, "%s (schema %d)\n", u.Path, u.Schema)
	fmt.Fprintf(&b, "  file %s, data %s, free pages %s (reused before the file grows; compact returns them)\n",
		mb(u.FileBytes), mb(u.DataBytes), mb(u.FreeBytes))
	fmt.Fprintf(&b, "  %d watches; retention %s\n", u.Watches, u.Retention)
	if u.Converting {
		fmt.Fprintf(&b, "  history from an older version is still being converted\n")
	}
	fmt.Fprintf(&b, "  %d samples", u.Samples)
	if u.Samples > 0 {
		fmt.Fprintf(&b, " (%s to %s)", u.OldestSample.Format(time.RFC3339), u.NewestSample.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "; %d hourly and %d daily aggregates\n", u.HourAggregates, u.DayAggregates)
	fmt.Fprintf(&b, "  %d Reports stored at a change, %d daily checkpoints, %d distinct bodies\n", u.Changes, u.Checkpoints, u.ReportBodies)
	fmt.Fprintf(&b, "  %-14s %10s %12s %12s\n", "bucket", "keys", "in use", "pages")
	for _, x := range u.Buckets {
		fmt.Fprintf(&b, "  %-14s %10d %12s %12s\n", x.Name, x.Keys, mb(x.InUseBytes), mb(x.AllocBytes))
	}
	return b.String()
}
