package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

// Samples are one per probe: time, status, DNS/connect/handshake latency and
// the reference of the stored Report the probe matched (the last change). They live in blocks
// of up to sampleBlockMax bytes, one bbolt value each:
//
//	key    be32(watch number) + be64(first sample, unix ms)
//	value  version byte, the 8-byte Report reference in force at the first
//	       sample, then per sample: the time as a zigzag varint
//	       delta-of-delta in ms (a regular schedule costs one byte), a head
//	       byte (status in bits 0-1; bit 2: a new 8-byte reference follows),
//	       and the three latencies as zigzag varint deltas in µs against the
//	       previous sample.
//
// A probe like the one before it costs 5 to 8 bytes plus its share of the
// block's key (28 bytes of key and bbolt element header per block). Blocks
// are small so that appending one sample rewrites at most one leaf page.
const sampleBlockMax = 512

const sampleBlockV1 = 1

type ref [8]byte

// rawSample is a sample as stored: ms time and µs latencies.
type rawSample struct {
	at     int64 // unix ms
	status uint8
	ref    ref
	lat    [3]int64 // dns, connect, handshake in µs
}

// Sample is one probe as history keeps it.
type Sample struct {
	At     time.Time    `json:"at"`
	Status probe.Status `json:"status"`
	// Latencies in ms; 0 (left out of the JSON) when the probe did not
	// get that far or did not need it (no DNS for an IP).
	DNSMS       float64 `json:"dns_ms,omitempty"`
	ConnectMS   float64 `json:"connect_ms,omitempty"`
	HandshakeMS float64 `json:"handshake_ms,omitempty"`
	// Report is the reference of the Report stored at the last change
	// before this probe (StoredReport.Ref): the one it matched in status,
	// findings, certificate, chain, TLS version and stage.
	Report string `json:"report"`
}

func (s *rawSample) public() Sample {
	return Sample{
		At:          time.UnixMilli(s.at).UTC(),
		Status:      statusNames[s.status&3],
		DNSMS:       float64(s.lat[0]) / 1000,
		ConnectMS:   float64(s.lat[1]) / 1000,
		HandshakeMS: float64(s.lat[2]) / 1000,
		Report:      s.ref.String(),
	}
}

func usOf(ms float64) int64 {
	if ms <= 0 || math.IsNaN(ms) {
		return 0
	}
	return int64(math.Round(math.Min(ms, 1e9) * 1000))
}

func sampleOf(rep *probe.Report, r ref) rawSample {
	return rawSample{
		at:     rep.CheckedAt.UnixMilli(),
		status: statusCode(rep.Status),
		ref:    r,
		lat:    [3]int64{usOf(rep.Timing.DNS), usOf(rep.Timing.Connect), usOf(rep.Timing.Handshake)},
	}
}

// blockState is what encoding the next sample of a block depends on.
type blockState struct {
	last rawSample
	dt   int64
	n    int
}

const headNewRef = 0x04

func (st *blockState) appendSample(b []byte, s rawSample) []byte {
	if st.n > 0 && s.at < st.last.at {
		s.at = st.last.at // a clock that stepped back: keep blocks ordered
	}
	dt := s.at - st.last.at
	if st.n == 0 {
		dt = 0
	}
	b = binary.AppendVarint(b, dt-st.dt)
	h := s.status & 3
	newRef := s.ref != st.last.ref
	if newRef {
		h |= headNewRef
	}
	b = append(b, h)
	if newRef {
		b = append(b, s.ref[:]...)
	}
	for i, v := range s.lat {
		b = binary.AppendVarint(b, v-st.last.lat[i])
	}
	st.last, st.dt = s, dt
	st.n++
	return b
}

var errBadBlock = errors.New("malformed sample block")

// newBlock starts a block whose key time is s.at.
func newBlock(s rawSample) ([]byte, blockState) {
	b := make([]byte, 0, 64)
	b = append(b, sampleBlockV1)
	b = append(b, s.ref[:]...)
	st := blockState{last: rawSample{at: s.at, ref: s.ref}}
	return st.appendSample(b, s), st
}

// decodeBlock calls fn with each sample in order (fn may stop it by
// returning false) and returns the state after the last sample decoded.
func decodeBlock(keyMS int64, v []byte, fn func(*rawSample) bool) (blockState, error) {
	if len(v) < 9 || v[0] != sampleBlockV1 {
		return blockState{}, errBadBlock
	}
	var st blockState
	copy(st.last.ref[:], v[1:9])
	st.last.at = keyMS
	d := decoder{b: v[9:]}
	for len(d.b) > 0 {
		st.dt += d.num()
		s := rawSample{at: st.last.at + st.dt, ref: st.last.ref}
		if len(d.b) == 0 {
			return st, errBadBlock
		}
		h := d.b[0]
		d.b = d.b[1:]
		s.status = h & 3
		if h&headNewRef != 0 {
			if len(d.b) < 8 {
				return st, errBadBlock
			}
			copy(s.ref[:], d.b[:8])
			d.b = d.b[8:]
		}
		for i := range s.lat {
			s.lat[i] = st.last.lat[i] + d.num()
		}
		if d.err != nil {
			return st, errBadBlock
		}
		st.last = s
		st.n++
		if fn != nil && !fn(&s) {
			break
		}
	}
	return st, nil
}

func blockKey(wnum uint32, ms int64) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint32(k, wnum)
	binary.BigEndian.PutUint64(k[4:], uint64(ms))
	return k
}

// blockKeyMS is the time in a sample block's (or change entry's) key; a key
// too short to hold one (a damaged file) reads as time 0.
func blockKeyMS(k []byte) int64 {
	if len(k) < 12 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(k[4:12]))
}

func wnumPrefix(wnum uint32) []byte { return binary.BigEndian.AppendUint32(nil, wnum) }

// lastOfWatch positions c on the last key of the watch's range.
func lastOfWatch(c *bolt.Cursor, wnum uint32) ([]byte, []byte) {
	var k, v []byte
	if wnum == math.MaxUint32 {
		k, v = c.Last()
	} else if k, _ = c.Seek(wnumPrefix(wnum + 1)); k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, wnumPrefix(wnum)) {
		return nil, nil
	}
	return k, v
}

// openBlock locates a watch's newest block and holds the state encoding
// its next sample needs. The head keeps it (same transaction as the block),
// so that appending a sample neither searches nor decodes the block; a
// mismatch (the pruner rewrote the block) falls back to both.
type openBlock struct {
	ms  int64 // key time; 0: unknown
	len int   // the value's length
	st  blockState
}

// appendSample adds s to the watch's newest block, or opens a new one.
func appendSample(b *bolt.Bucket, wnum uint32, s rawSample, ob *openBlock) error {
	if ob.ms != 0 {
		k := blockKey(wnum, ob.ms)
		if v := b.Get(k); v != nil && len(v) == ob.len && (len(v) < sampleBlockMax || ob.ms >= s.at) {
			return putAppended(b, k, v, s, ob)
		}
	}
	k, v := lastOfWatch(b.Cursor(), wnum)
	// A full block takes one more sample when the next block could not
	// start after it (same millisecond).
	if k != nil && (len(v) < sampleBlockMax || blockKeyMS(k) >= s.at) {
		st, err := decodeBlock(blockKeyMS(k), v, nil)
		if err == nil {
			*ob = openBlock{ms: blockKeyMS(k), st: st}
			return putAppended(b, append([]byte(nil), k...), v, s, ob)
		}
		// A damaged block stays as it is (readers skip it); start anew.
	}
	if k != nil && blockKeyMS(k) >= s.at {
		s.at = blockKeyMS(k) + 1
	}
	nb, st := newBlock(s)
	*ob = openBlock{ms: s.at, len: len(nb), st: st}
	return b.Put(blockKey(wnum, s.at), nb)
}

func putAppended(b *bolt.Bucket, k, v []byte, s rawSample, ob *openBlock) error {
	nb := make([]byte, len(v), len(v)+32)
	copy(nb, v)
	nb = ob.st.appendSample(nb, s)
	ob.len = len(nb)
	return b.Put(k, nb)
}

func (ob *openBlock) encode(b []byte) []byte {
	b = binary.AppendVarint(b, ob.ms)
	if ob.ms == 0 {
		return b
	}
	st := &ob.st
	b = binary.AppendUvarint(b, uint64(ob.len))
	b = binary.AppendVarint(b, st.last.at)
	b = binary.AppendVarint(b, st.dt)
	b = binary.AppendUvarint(b, uint64(st.n))
	b = append(b, st.last.status)
	b = append(b, st.last.ref[:]...)
	for _, v := range st.last.lat {
		b = binary.AppendVarint(b, v)
	}
	return b
}

func (ob *openBlock) decode(d *decoder) {
	if ob.ms = d.num(); ob.ms == 0 {
		return
	}
	st := &ob.st
	ob.len = int(d.unum())
	st.last.at = d.num()
	st.dt = d.num()
	st.n = int(d.unum())
	if len(d.b) < 9 {
		d.err = errShortRecord
		return
	}
	st.last.status = d.b[0]
	copy(st.last.ref[:], d.b[1:9])
	d.b = d.b[9:]
	for i := range st.last.lat {
		st.last.lat[i] = d.num()
	}
}
