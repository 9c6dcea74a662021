package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Records are stored in a small binary form, not JSON: loading 100,000 of
// them at start is on the critical path (issue 7: start to scheduling under
// 2 s), and decoding JSON was most of it. The form is a version byte then
// fields in a fixed order; a JSON value (first byte '{') is still read, so
// files written before the codec keep working. Reports, read rarely and shown
// as JSON anyway, stay JSON.
const recordCodecV1 = 1

func encodeRecord(r *Record) []byte {
	b := make([]byte, 0, 256)
	b = append(b, recordCodecV1)
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	num := func(n int64) { b = binary.AppendVarint(b, n) }
	tm := func(t time.Time) {
		if t.IsZero() {
			num(0)
			return
		}
		num(t.UnixNano())
	}
	str(r.ID)
	str(r.Target.Host)
	num(int64(r.Target.Port))
	str(r.Target.SNI)
	str(r.Target.IP)
	str(r.Path)
	str(r.Scheme)
	num(int64(r.TimeoutMS))
	str(r.Schedule)
	num(int64(len(r.Thresholds)))
	for _, d := range r.Thresholds {
		num(int64(d))
	}
	num(int64(r.FailureThreshold))
	str(r.ClientCert)
	tm(r.CreatedAt)
	tm(r.UpdatedAt)
	str(r.State)
	num(int64(r.ConsecutiveFailures))
	tm(r.LastCheckedAt)
	str(r.LastStatus)
	tm(r.NotAfter)
	str(r.Fingerprint)
	num(int64(r.FiredDays))
	num(int64(r.HistoryCount))
	// Fields added later go here, at the end: decodeRecord treats missing
	// trailing fields as zero, so older values keep decoding.
	num(int64(r.TransitionCount))
	return b
}

var errShortRecord = errors.New("truncated record")

func decodeRecord(raw []byte, r *Record) error {
	if len(raw) > 0 && raw[0] == '{' {
		return json.Unmarshal(raw, r)
	}
	if len(raw) == 0 || raw[0] != recordCodecV1 {
		return fmt.Errorf("unknown record encoding %#x", raw[:min(1, len(raw))])
	}
	d := decoder{b: raw[1:]}
	r.ID = d.str()
	r.Target.Host = d.str()
	r.Target.Port = int(d.num())
	r.Target.SNI = d.str()
	r.Target.IP = d.str()
	r.Path = d.str()
	r.Scheme = d.str()
	r.TimeoutMS = int(d.num())
	r.Schedule = d.str()
	n := d.num()
	if n < 0 || n > 64 {
		return fmt.Errorf("record %q: %d thresholds", r.ID, n)
	}
	r.Thresholds = make([]int, n)
	for i := range r.Thresholds {
		r.Thresholds[i] = int(d.num())
	}
	r.FailureThreshold = int(d.num())
	r.ClientCert = d.str()
	r.CreatedAt = d.tm()
	r.UpdatedAt = d.tm()
	r.State = d.str()
	r.ConsecutiveFailures = int(d.num())
	r.LastCheckedAt = d.tm()
	r.LastStatus = d.str()
	r.NotAfter = d.tm()
	r.Fingerprint = d.str()
	r.FiredDays = int(d.num())
	r.HistoryCount = int(d.num())
	if len(d.b) > 0 {
		r.TransitionCount = int(d.num())
	}
	if d.err != nil {
		return fmt.Errorf("record %q: %w", r.ID, d.err)
	}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) num() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	if d.err != nil {
		return ""
	}
	l, n := binary.Uvarint(d.b)
	if n <= 0 || uint64(len(d.b)-n) < l {
		d.err = errShortRecord
		return ""
	}
	s := string(d.b[n : n+int(l)]) // copies out of bbolt's mmap
	d.b = d.b[n+int(l):]
	return s
}

func (d *decoder) tm() time.Time {
	n := d.num()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
