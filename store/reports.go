package store

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

// Full Reports are stored only when something meaningful changed (see
// signature), plus one checkpoint per watch per UTC day:
//
//	changes  be32(watch number) + be64(unix ms) -> kind, body reference,
//	         checked_at (ns) and timing_ms of that probe
//	bodies   be32(watch number) + reference -> the Report's content
//
// A body is the Report's JSON without checked_at and timing_ms (those live
// in the change entry), compressed with DEFLATE; its reference is the first
// 8 bytes of the SHA-256 of that JSON, so a Report seen again (an endpoint
// flipping between two backends, down with the same error) is stored once.
// A checkpoint differs from the last change mostly in days_remaining and
// revocation times, so its body is stored as a delta against that change's
// body (delta.go): a few dozen bytes instead of several hundred.
const (
	kindChange     = 1
	kindCheckpoint = 2
)

// String is the reference as clients see it.
func (r ref) String() string {
	if r == (ref{}) {
		return ""
	}
	return hex.EncodeToString(r[:])
}

// signature covers what makes a Report a change worth keeping: status,
// reachability, trust, expiry stage, the set of finding codes, the leaf's
// fingerprint, the chain, the TLS version, and on MCP-level watches the
// protocol version, server and tools hash. Timing, days_remaining and
// messages do not count.
func signature(rep *probe.Report) ref {
	h := sha256.New()
	put := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	put(string(rep.Status))
	put(strconv.FormatBool(rep.Reachable) + strconv.FormatBool(rep.Trusted))
	put(string(rep.ExpiryStage))
	codes := make([]string, 0, len(rep.Findings))
	for _, f := range rep.Findings {
		codes = append(codes, f.Code)
	}
	slices.Sort(codes)
	for _, c := range slices.Compact(codes) {
		put(c)
	}
	put("|")
	if rep.Leaf != nil {
		put(rep.Leaf.SHA256)
	}
	if c := rep.Chain; c != nil {
		put(strconv.Itoa(c.Served) + strconv.FormatBool(c.Complete))
		for _, s := range c.VerifiedPath {
			put(s)
		}
	}
	put("|")
	if rep.TLS != nil {
		put(rep.TLS.Version)
	}
	if m := rep.MCP; m != nil {
		put("mcp|" + m.ProtocolVersion + "|" + m.Server.Name + "|" + m.Server.Version + "|" + m.ToolsHash)
	}
	var r ref
	copy(r[:], h.Sum(nil))
	return r
}

// content is the Report as a body stores it.
func content(rep *probe.Report) ([]byte, error) {
	c := *rep
	c.CheckedAt = time.Time{}
	c.Timing = probe.Timing{}
	raw, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return raw, nil
}

// ReportContent is a Report as every history store keeps it (without
// checked_at and timing, which its samples keep) and the reference that
// names it: the first 8 bytes of the content's SHA-256, in hex.
func ReportContent(rep *probe.Report) (raw []byte, ref string, err error) {
	raw, err = content(rep)
	if err != nil {
		return nil, "", err
	}
	return raw, contentRef(raw).String(), nil
}

func contentRef(raw []byte) ref {
	sum := sha256.Sum256(raw)
	var r ref
	copy(r[:], sum[:8])
	return r
}

const bodyV1 = 1

func bodyKey(wnum uint32, r ref) []byte { return append(wnumPrefix(wnum), r[:]...) }

// putBody stores raw (as a delta against base's content when base is set)
// unless an equal body is stored already, and returns its reference. A
// reference taken by different content (a 64-bit collision within one
// watch) moves to the next free one.
func putBody(b *bolt.Bucket, wnum uint32, raw []byte, base ref) (ref, error) {
	r := contentRef(raw)
	for range 16 {
		v := b.Get(bodyKey(wnum, r))
		if v == nil {
			break
		}
		got, err := loadBody(b, wnum, r)
		if err == nil && bytes.Equal(got, raw) {
			return r, nil
		}
		binary.BigEndian.PutUint64(r[:], binary.BigEndian.Uint64(r[:])+1)
	}
	var dict []byte
	if base != (ref{}) {
		d, err := loadBody(b, wnum, base)
		if err != nil {
			return ref{}, fmt.Errorf("checkpoint base %s: %w", base, err)
		}
		dict = d
	}
	enc, err := compressBody(raw, dict)
	if err != nil {
		return ref{}, err
	}
	v := make([]byte, 0, 10+len(enc))
	v = append(v, bodyV1)
	if dict != nil {
		v = append(v, 1)
		v = append(v, base[:]...)
	} else {
		v = append(v, 0)
	}
	v = append(v, enc...)
	return r, b.Put(bodyKey(wnum, r), v)
}

// Full bodies are DEFLATE-compressed with pooled writers and readers (a
// flate writer costs some 600 KB to set up).
var (
	flateWriters = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(nil, flate.DefaultCompression)
		return w
	}}
	flateReaders = sync.Pool{New: func() any { return flate.NewReader(nil) }}
)

// compressBody encodes raw: as a delta against dict when there is one (a
// checkpoint), else DEFLATE.
func compressBody(raw, dict []byte) ([]byte, error) {
	if dict != nil {
		return appendDelta(nil, dict, raw), nil
	}
	var buf bytes.Buffer
	w := flateWriters.Get().(*flate.Writer)
	defer flateWriters.Put(w)
	w.Reset(&buf)
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func inflate(data []byte) ([]byte, error) {
	r := flateReaders.Get().(io.ReadCloser)
	defer flateReaders.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(data), nil); err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

var errNoBody = errors.New("report body missing")

// bodyBase is the body a stored body was compressed against (zero for a
// self-contained one).
func bodyBase(v []byte) (ref, error) {
	var base ref
	if len(v) < 2 || v[0] != bodyV1 {
		return base, fmt.Errorf("report body: unknown encoding")
	}
	if v[1]&1 != 0 {
		if len(v) < 10 {
			return base, fmt.Errorf("report body: truncated")
		}
		copy(base[:], v[2:10])
	}
	return base, nil
}

// loadBody returns a body's JSON content.
func loadBody(b *bolt.Bucket, wnum uint32, r ref) ([]byte, error) {
	return loadBodyDepth(b, wnum, r, 0)
}

func loadBodyDepth(b *bolt.Bucket, wnum uint32, r ref, depth int) ([]byte, error) {
	v := b.Get(bodyKey(wnum, r))
	if v == nil {
		return nil, fmt.Errorf("%s: %w", r, errNoBody)
	}
	base, err := bodyBase(v)
	if err != nil {
		return nil, err
	}
	var out []byte
	if base == (ref{}) {
		out, err = inflate(v[2:])
	} else {
		if depth > 2 {
			return nil, fmt.Errorf("report body %s: base chain too long", r)
		}
		var dict []byte
		if dict, err = loadBodyDepth(b, wnum, base, depth+1); err != nil {
			return nil, err
		}
		out, err = applyDelta(dict, v[10:])
	}
	if err != nil {
		return nil, fmt.Errorf("report body %s: %w", r, err)
	}
	return out, nil
}

// change is one entry of the changes bucket.
type change struct {
	at     int64 // unix ms (the key)
	kind   byte
	ref    ref
	nanos  int64 // checked_at, unix ns
	timing probe.Timing
}

func changeKey(wnum uint32, ms int64) []byte { return blockKey(wnum, ms) }

// putChange stores a change entry; two in the same millisecond both stay.
func putChange(b *bolt.Bucket, wnum uint32, c change) error {
	k := changeKey(wnum, c.at)
	for b.Get(k) != nil {
		c.at++
		k = changeKey(wnum, c.at)
	}
	v := make([]byte, 0, 50)
	v = append(v, c.kind)
	v = append(v, c.ref[:]...)
	v = binary.AppendVarint(v, c.nanos)
	for _, f := range []float64{c.timing.DNS, c.timing.Connect, c.timing.Handshake, c.timing.Total} {
		v = binary.LittleEndian.AppendUint64(v, math.Float64bits(f))
	}
	return b.Put(k, v)
}

func decodeChange(k, v []byte) (change, error) {
	c := change{at: blockKeyMS(k)}
	if len(v) < 9 {
		return c, fmt.Errorf("change entry: truncated")
	}
	c.kind = v[0]
	copy(c.ref[:], v[1:9])
	d := decoder{b: v[9:]}
	c.nanos = d.num()
	if d.err != nil || len(d.b) != 32 {
		return c, fmt.Errorf("change entry: truncated")
	}
	f := func(i int) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(d.b[i*8:])) }
	c.timing = probe.Timing{DNS: f(0), Connect: f(1), Handshake: f(2), Total: f(3)}
	return c, nil
}

// StoredReport is a full Report that history kept: at a change, or as the
// day's checkpoint.
type StoredReport struct {
	At time.Time `json:"at"`
	// Kind is "change" (something meaningful differs from the Report
	// before) or "checkpoint" (the first probe of a UTC day).
	Kind string `json:"kind"`
	// Ref is what samples name in their report field.
	Ref    string       `json:"ref"`
	Report probe.Report `json:"report"`
}

var kindNames = map[byte]string{kindChange: "change", kindCheckpoint: "checkpoint"}

// bodyCache holds decompressed bodies during one read.
type bodyCache map[ref][]byte

func (bc bodyCache) report(bodies *bolt.Bucket, wnum uint32, r ref) (probe.Report, error) {
	raw, ok := bc[r]
	if !ok {
		var err error
		if raw, err = loadBody(bodies, wnum, r); err != nil {
			return probe.Report{}, err
		}
		bc[r] = raw
	}
	var rep probe.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		return probe.Report{}, fmt.Errorf("report body %s: %w", r, err)
	}
	return rep, nil
}

// stored rebuilds the Report of a change entry.
func (c *change) stored(bodies *bolt.Bucket, wnum uint32, bc bodyCache) (StoredReport, error) {
	rep, err := bc.report(bodies, wnum, c.ref)
	if err != nil {
		return StoredReport{}, err
	}
	rep.CheckedAt = time.Unix(0, c.nanos).UTC()
	rep.Timing = c.timing
	return StoredReport{At: rep.CheckedAt, Kind: kindNames[c.kind], Ref: c.ref.String(), Report: rep}, nil
}
