package store

// Probe history, in six buckets (schema 4; see history_migrate.go for the
// conversion from the JSON Report per probe of schemas 1 and 2):
//
//	hist_heads    watch id -> head: the watch's number and the state of its
//	              history (small: the pruner and the recent figures scan it)
//	hist_last     watch id -> the newest Report (JSON, for list_watches)
//	hist_samples  one small record per probe, in blocks (samples.go)
//	hist_aggs     be32(watch number) + be32(UTC day) -> that day's hourly
//	              aggregates (aggregates.go)
//	hist_changes  full Reports on change and daily checkpoints (reports.go)
//	hist_bodies   their deduplicated, compressed content
//
// Keys of the last four start with the watch's number (4 bytes, assigned
// once per watch from a sequence) rather than its id, so that a key costs 12
// bytes instead of 27; one watch's data is one contiguous range per bucket,
// which a query reads with one seek and Delete removes with one scan.
// Retention (retention.go) prunes each watch's oldest keys.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

var (
	bHeads   = []byte("hist_heads")
	bLast    = []byte("hist_last")
	bSamples = []byte("hist_samples")
	bAggs    = []byte("hist_aggs")
	bChanges = []byte("hist_changes")
	bBodies  = []byte("hist_bodies")

	histBuckets = [][]byte{bHeads, bLast, bSamples, bAggs, bChanges, bBodies}
)

// head is a watch's history state.
type head struct {
	wnum uint32
	// sig is the signature of the last change and change its Report's
	// reference (what samples name); body the reference of the last stored
	// Report (change or checkpoint); keyBody the self-contained body that
	// checkpoints are stored as deltas against.
	sig, change, body, keyBody ref
	changedAt                  int64 // unix ns of the last change
	storedAt                   int64 // unix ns of the last stored Report
	probes, changes            uint64
	open                       openBlock
}

const headV1 = 1

func (h *head) encode() []byte {
	b := make([]byte, 0, 128)
	b = append(b, headV1)
	b = binary.AppendUvarint(b, uint64(h.wnum))
	b = append(b, h.sig[:]...)
	b = append(b, h.change[:]...)
	b = append(b, h.body[:]...)
	b = append(b, h.keyBody[:]...)
	b = binary.AppendVarint(b, h.changedAt)
	b = binary.AppendVarint(b, h.storedAt)
	b = binary.AppendUvarint(b, h.probes)
	b = binary.AppendUvarint(b, h.changes)
	return h.open.encode(b)
}

func decodeHead(v []byte) (*head, error) {
	if len(v) < 1 || v[0] != headV1 {
		return nil, fmt.Errorf("history head: unknown encoding")
	}
	d := decoder{b: v[1:]}
	h := &head{wnum: uint32(d.unum())}
	if d.err != nil || len(d.b) < 32 {
		return nil, fmt.Errorf("history head: truncated")
	}
	copy(h.sig[:], d.b[0:8])
	copy(h.change[:], d.b[8:16])
	copy(h.body[:], d.b[16:24])
	copy(h.keyBody[:], d.b[24:32])
	d.b = d.b[32:]
	h.changedAt = d.num()
	h.storedAt = d.num()
	h.probes = d.unum()
	h.changes = d.unum()
	h.open.decode(&d)
	if d.err != nil {
		return nil, fmt.Errorf("history head: truncated")
	}
	return h, nil
}

// histTx is the history buckets of one transaction.
type histTx struct {
	tx                                          *bolt.Tx
	heads, last, samples, aggs, changes, bodies *bolt.Bucket
}

var errNoHistory = errors.New("history buckets missing (database not migrated)")

func openHist(tx *bolt.Tx) (*histTx, error) {
	h := &histTx{tx: tx, heads: tx.Bucket(bHeads), last: tx.Bucket(bLast), samples: tx.Bucket(bSamples),
		aggs: tx.Bucket(bAggs), changes: tx.Bucket(bChanges), bodies: tx.Bucket(bBodies)}
	if h.heads == nil || h.last == nil || h.samples == nil || h.aggs == nil || h.changes == nil || h.bodies == nil {
		return nil, errNoHistory
	}
	return h, nil
}

// head reads a watch's head; with create, a watch without one gets a new
// number.
func (h *histTx) head(id string, create bool) (*head, error) {
	if v := h.heads.Get([]byte(id)); v != nil {
		return decodeHead(v)
	}
	if !create {
		return nil, nil
	}
	n, err := h.heads.NextSequence()
	if err != nil {
		return nil, err
	}
	if n > math.MaxUint32 {
		return nil, fmt.Errorf("history: watch numbers exhausted")
	}
	return &head{wnum: uint32(n)}, nil
}

func (h *histTx) putHead(id string, hd *head) error { return h.heads.Put([]byte(id), hd.encode()) }

// openHead opens the history buckets and reads a watch's head (nil when
// the watch has no history).
func openHead(tx *bolt.Tx, id string) (*histTx, *head, error) {
	h, err := openHist(tx)
	if err != nil {
		return nil, nil, err
	}
	hd, err := h.head(id, false)
	return h, hd, err
}

// record adds one probe to a watch's history: a sample, the hour's
// aggregate, and the full Report when it is a change (or force), or the
// day's first probe.
func (h *histTx) record(hd *head, rep *probe.Report, force bool) error {
	sig := signature(rep)
	var kind byte
	switch {
	case hd.body == (ref{}) || force || sig != hd.sig:
		kind = kindChange
	case floorDiv(rep.CheckedAt.UnixNano(), nsPerDay) != floorDiv(hd.storedAt, nsPerDay):
		kind = kindCheckpoint
	}
	if kind != 0 {
		if err := h.storeReport(hd, rep, kind, sig); err != nil {
			return err
		}
	}
	s := sampleOf(rep, hd.change)
	if err := appendSample(h.samples, hd.wnum, s, &hd.open); err != nil {
		return fmt.Errorf("append sample: %w", err)
	}
	if err := addToAggs(h.aggs, hd.wnum, s); err != nil {
		return fmt.Errorf("update aggregates: %w", err)
	}
	hd.probes++
	return nil
}

func (h *histTx) storeReport(hd *head, rep *probe.Report, kind byte, sig ref) error {
	raw, err := content(rep)
	if err != nil {
		return err
	}
	var base ref
	if kind == kindCheckpoint {
		base = hd.keyBody
	}
	r, err := putBody(h.bodies, hd.wnum, raw, base)
	if err != nil {
		return fmt.Errorf("store report body: %w", err)
	}
	c := change{at: rep.CheckedAt.UnixMilli(), kind: kind, ref: r, nanos: rep.CheckedAt.UnixNano(), timing: rep.Timing}
	if err := putChange(h.changes, hd.wnum, c); err != nil {
		return fmt.Errorf("store report: %w", err)
	}
	hd.body, hd.storedAt = r, c.nanos
	if kind == kindChange {
		hd.sig, hd.change, hd.changedAt = sig, r, c.nanos
		hd.changes++
		// Checkpoints compress against a self-contained body: this one,
		// or the one it was itself compressed against.
		base, err := bodyBase(h.bodies.Get(bodyKey(hd.wnum, r)))
		if err != nil {
			return err
		}
		hd.keyBody = r
		if base != (ref{}) {
			hd.keyBody = base
		}
	}
	return nil
}

const (
	nsPerDay  = int64(24 * 3600 * 1e9)
	msPerDay  = int64(24 * 3600 * 1e3)
	msPerHour = int64(3600 * 1e3)
)

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func aggKey(wnum uint32, day int64) []byte {
	return binary.BigEndian.AppendUint32(wnumPrefix(wnum), uint32(max(day, 0)))
}

func aggKeyDay(k []byte) int64 {
	if len(k) < 8 {
		return 0 // a damaged key: as old as can be
	}
	return int64(binary.BigEndian.Uint32(k[4:8]))
}

func addToAggs(b *bolt.Bucket, wnum uint32, s rawSample) error {
	day := floorDiv(s.at, msPerDay)
	k := aggKey(wnum, day)
	var v dayAggs
	if raw := b.Get(k); raw != nil {
		var err error
		if v, err = decodeDayAggs(raw); err != nil {
			return err
		}
	}
	hour := int((s.at - day*msPerDay) / msPerHour)
	v.hours[hour].add(s.status, s.lat[2])
	v.mask |= 1 << hour
	if v.dayOK {
		v.day.add(s.status, s.lat[2])
	}
	return b.Put(k, v.encode())
}

// appendProbe is Apply's history step for one update carrying a Report.
func appendProbe(tx *bolt.Tx, rec *Record, rep *probe.Report, force bool) error {
	if err := convertWatch(tx, rec.ID); err != nil {
		return err
	}
	h, err := openHist(tx)
	if err != nil {
		return err
	}
	hd, err := h.head(rec.ID, true)
	if err != nil {
		return err
	}
	if err := h.record(hd, rep, force); err != nil {
		return err
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := h.last.Put([]byte(rec.ID), raw); err != nil {
		return err
	}
	rec.HistoryCount, rec.TransitionCount = int(min(hd.probes, math.MaxInt32)), int(min(hd.changes, math.MaxInt32))
	return h.putHead(rec.ID, hd)
}

// deleteHistory removes everything history holds of a watch.
func deleteHistory(tx *bolt.Tx, id string) error {
	for _, name := range [][]byte{bHistory, bTransitions} {
		if b := tx.Bucket(name); b != nil {
			if err := deletePrefix(b, []byte(id+"/")); err != nil {
				return err
			}
		}
	}
	h, hd, err := openHead(tx, id)
	if err != nil || hd == nil {
		return err
	}
	for _, b := range []*bolt.Bucket{h.samples, h.aggs, h.changes, h.bodies} {
		if err := deletePrefix(b, wnumPrefix(hd.wnum)); err != nil {
			return err
		}
	}
	if err := h.last.Delete([]byte(id)); err != nil {
		return err
	}
	return h.heads.Delete([]byte(id))
}

// lastReport is the newest Report of a watch, or nil.
func lastReport(tx *bolt.Tx, id []byte) (*probe.Report, error) {
	var raw []byte
	if b := tx.Bucket(bLast); b != nil {
		raw = b.Get(id)
	}
	if raw == nil {
		// Not converted yet: the newest entry of the schema-1 history.
		if b := tx.Bucket(bHistory); b != nil {
			_, raw = lastWithPrefix(b.Cursor(), append(append([]byte(nil), id...), '/'))
		}
	}
	if len(raw) == 0 {
		return nil, nil
	}
	var rep probe.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
