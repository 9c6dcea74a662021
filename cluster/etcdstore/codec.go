package etcdstore

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// A watch is two keys: its spec (what it is: target, schedule, probe
// configuration; written by Add) and its state (what the watcher knows:
// written by every probe). The state is small JSON, because it is what
// every probe writes; the spec is a store.Record's JSON with the state
// fields left out.

// stateV is the value of state/<id>.
type stateV struct {
	// Origin is the process that wrote it (see Store.origin): a node tells
	// its own writes from the others' in the watch stream by it.
	Origin        string              `json:"o"`
	UpdatedAt     time.Time           `json:"u"`
	State         string              `json:"s"`
	Failures      int                 `json:"f,omitempty"`
	LastCheckedAt time.Time           `json:"c"`
	LastStatus    string              `json:"ls,omitempty"`
	NotAfter      time.Time           `json:"na"`
	Fingerprint   string              `json:"fp,omitempty"`
	FiredStage    string              `json:"fs,omitempty"`
	RenewalCycle  time.Duration       `json:"cy,omitempty"`
	ProbedBy      string              `json:"by,omitempty"`
	MCPInfo       *probe.MCPInfo      `json:"mcp,omitempty"`
	MCPTools      []probe.MCPTool     `json:"mt,omitempty"`
	MCPRecent     []store.RecentProbe `json:"mr,omitempty"`
	// Last is the latest Report: its body's reference, time and timing
	// (exact; samples keep them at microseconds).
	Last       string       `json:"r,omitempty"`
	LastAt     time.Time    `json:"ra"`
	LastTiming probe.Timing `json:"rt"`
	// Refs are the Report bodies kept, most recently used first.
	Refs []string `json:"refs,omitempty"`
	// Block holds the newest samples; Segs counts the segments sealed so
	// far (the next one's number); Count the samples kept.
	Block []byte `json:"b,omitempty"`
	Segs  uint64 `json:"sg,omitempty"`
	Count int    `json:"n"`
}

// specOf is a record without its state: what watches/<id> holds.
func specOf(r store.Record) store.Record {
	s := r
	s.UpdatedAt, s.State, s.ConsecutiveFailures, s.LastCheckedAt, s.LastStatus = time.Time{}, "", 0, time.Time{}, ""
	s.NotAfter, s.Fingerprint, s.FiredStage, s.RenewalCycle, s.HistoryCount, s.TransitionCount = time.Time{}, "", "", 0, 0, 0
	s.ProbedBy, s.MCPInfo, s.MCPTools, s.MCPRecent, s.Rev = "", nil, nil, nil, 0
	return s
}

func encodeSpec(r store.Record) ([]byte, error) {
	raw, err := json.Marshal(specOf(r))
	if err != nil {
		return nil, fmt.Errorf("encode watch %s: %w", r.ID, err)
	}
	return raw, nil
}

// merge is the record of a spec and a state.
func merge(spec []byte, st *stateV) (store.Record, error) {
	var r store.Record
	if err := json.Unmarshal(spec, &r); err != nil {
		return store.Record{}, fmt.Errorf("decode watch: %w", err)
	}
	if st == nil {
		return r, nil
	}
	r.UpdatedAt, r.State, r.ConsecutiveFailures, r.LastCheckedAt, r.LastStatus = st.UpdatedAt, st.State, st.Failures, st.LastCheckedAt, st.LastStatus
	r.NotAfter, r.Fingerprint, r.FiredStage, r.RenewalCycle, r.HistoryCount = st.NotAfter, st.Fingerprint, st.FiredStage, st.RenewalCycle, st.Count
	r.ProbedBy, r.MCPInfo, r.MCPTools, r.MCPRecent = st.ProbedBy, st.MCPInfo, st.MCPTools, st.MCPRecent
	return r, nil
}

// stateOf carries a record's state fields into st (which keeps its
// history bookkeeping).
func stateOf(r *store.Record, st *stateV) {
	st.UpdatedAt, st.State, st.Failures, st.LastCheckedAt, st.LastStatus = r.UpdatedAt, r.State, r.ConsecutiveFailures, r.LastCheckedAt, r.LastStatus
	st.NotAfter, st.Fingerprint, st.FiredStage, st.RenewalCycle = r.NotAfter, r.Fingerprint, r.FiredStage, r.RenewalCycle
	st.ProbedBy, st.MCPInfo, st.MCPTools, st.MCPRecent = r.ProbedBy, r.MCPInfo, r.MCPTools, r.MCPRecent
}

func decodeState(raw []byte) (*stateV, error) {
	st := new(stateV)
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	return st, nil
}

// Report bodies: a Report without checked_at and timing_ms (which change
// every probe; the samples keep them), as DEFLATEd JSON, stored once per
// distinct content and named by the first 8 bytes of its SHA-256.

func body(rep *probe.Report) (ref string, raw []byte, err error) {
	js, ref, err := store.ReportContent(rep)
	if err != nil {
		return "", nil, err
	}
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed) // only a bad level fails
	w.Write(js)
	w.Close()
	return ref, buf.Bytes(), nil
}

// maxBody bounds what a stored body may inflate to.
const maxBody = 4 << 20

func decodeBody(raw []byte, at time.Time, timing probe.Timing) (probe.Report, error) {
	js, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(raw)), maxBody))
	if err != nil {
		return probe.Report{}, fmt.Errorf("inflate report: %w", err)
	}
	var rep probe.Report
	if err := json.Unmarshal(js, &rep); err != nil {
		return probe.Report{}, fmt.Errorf("decode report: %w", err)
	}
	rep.CheckedAt, rep.Timing = at, timing
	return rep, nil
}

// Samples: one per probe, in blocks. A block is a version byte, then per
// sample: the time as a zigzag varint delta in µs from the previous
// sample (from zero for the first), a head byte (the status in bits 0-1;
// bit 2: an 8-byte body reference follows, always for the first), and the
// four timings as varints in µs. A probe like the one before costs about
// ten bytes.
const blockV1 = 1

// SegmentSamples is how many samples a block holds before it is sealed
// into a history segment of its own.
const SegmentSamples = 16

// sample is one probe as history keeps it.
type sample struct {
	at     int64 // unix µs
	status probe.Status
	ref    [8]byte
	timing [4]int64 // dns, connect, handshake, total in µs
}

var statusCodes = []probe.Status{probe.StatusOK, probe.StatusWarning, probe.StatusCritical, probe.StatusDown}

func statusCode(s probe.Status) byte {
	for i, c := range statusCodes {
		if c == s {
			return byte(i)
		}
	}
	return 3
}

func us(ms float64) int64 {
	if ms <= 0 || math.IsNaN(ms) {
		return 0
	}
	return int64(math.Round(math.Min(ms, 1e9) * 1000))
}

func sampleOf(rep *probe.Report, ref string) sample {
	s := sample{at: rep.CheckedAt.UnixMicro(), status: rep.Status,
		timing: [4]int64{us(rep.Timing.DNS), us(rep.Timing.Connect), us(rep.Timing.Handshake), us(rep.Timing.Total)}}
	hex.Decode(s.ref[:], []byte(ref))
	return s
}

func (s *sample) refString() string { return hex.EncodeToString(s.ref[:]) }

func (s *sample) time() time.Time { return time.UnixMicro(s.at).UTC() }

func (s *sample) timingMS() probe.Timing {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return probe.Timing{DNS: ms(s.timing[0]), Connect: ms(s.timing[1]), Handshake: ms(s.timing[2]), Total: ms(s.timing[3])}
}

// appendSample adds s to block (a new one when empty).
func appendSample(block []byte, s sample) ([]byte, error) {
	var prev sample
	first := len(block) == 0
	if first {
		block = []byte{blockV1}
	} else {
		ss, err := decodeBlock(block)
		if err != nil {
			return nil, err
		}
		prev = ss[len(ss)-1]
	}
	block = binary.AppendVarint(block, s.at-prev.at)
	head := statusCode(s.status)
	newRef := first || s.ref != prev.ref
	if newRef {
		head |= 4
	}
	block = append(block, head)
	if newRef {
		block = append(block, s.ref[:]...)
	}
	for _, v := range s.timing {
		block = binary.AppendUvarint(block, uint64(max(v, 0)))
	}
	return block, nil
}

var errBadBlock = errors.New("malformed sample block")

// decodeBlock returns a block's samples, oldest first.
func decodeBlock(b []byte) ([]sample, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != blockV1 {
		return nil, errBadBlock
	}
	b = b[1:]
	var out []sample
	var prev sample
	for len(b) > 0 {
		d, n := binary.Varint(b)
		if n <= 0 || len(b) < n+1 {
			return nil, errBadBlock
		}
		s := sample{at: prev.at + d, ref: prev.ref}
		head := b[n]
		b = b[n+1:]
		s.status = statusCodes[head&3]
		if head&4 != 0 {
			if len(b) < 8 {
				return nil, errBadBlock
			}
			copy(s.ref[:], b[:8])
			b = b[8:]
		}
		for i := range s.timing {
			v, n := binary.Uvarint(b)
			if n <= 0 || v > math.MaxInt64 {
				return nil, errBadBlock
			}
			s.timing[i] = int64(v)
			b = b[n:]
		}
		out = append(out, s)
		prev = s
	}
	return out, nil
}
