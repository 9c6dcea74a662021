package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// Records are stored in a small binary form, not JSON: loading 100,000 of
// them at start is on the critical path (start to scheduling within 2 s),
// and decoding JSON was most of it. The form is a version byte then
// fields in a fixed order; a JSON value (first byte '{') is still read, so
// files written before the codec keep working. Reports, read rarely and shown
// as JSON anyway, stay JSON.
const recordCodecV1 = 1

func encodeRecord(r *Record) []byte {
	// Room for an MCP-level watch's state: growing into it cost more.
	b := make([]byte, 0, 256+8*len(r.MCPRecent)+40*len(r.MCPTools))
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
	// Whole-day thresholds here, as every version wrote them; the full
	// list (hours and percentages too) in the thresholds group at the end.
	days := dayThresholds(r.Thresholds)
	num(int64(len(days)))
	for _, d := range days {
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
	num(int64(legacyFiredDays(r.FiredStage)))
	num(int64(r.HistoryCount))
	// Fields added later go here, at the end, in groups: decodeRecord
	// treats a missing trailing group as zero, so older values keep
	// decoding.
	num(int64(r.TransitionCount))
	// Schema 2: the probe configuration a watch carries.
	pc := r.Probe
	if pc == nil {
		pc = &ProbeConfig{}
	}
	num(int64(len(pc.Roots)))
	for _, der := range pc.Roots {
		str(string(der))
	}
	str(pc.ClientCertFile)
	str(pc.ClientKeyFile)
	flags := int64(0)
	if pc.Policy.DenyPrivate {
		flags |= 1
	}
	if r.MCP {
		flags |= 2
	}
	num(flags)
	for _, list := range [][]string{pc.Policy.AllowCIDRs, pc.Policy.DenyCIDRs} {
		num(int64(len(list)))
		for _, c := range list {
			str(c)
		}
	}
	str(pc.TokenName)
	str(r.CreatedBy)
	str(r.ProbedBy)
	var mcp []byte
	if r.MCPInfo != nil {
		mcp, _ = json.Marshal(r.MCPInfo) // a struct of strings and numbers: cannot fail
	}
	str(string(mcp))
	return appendMCPState(append(b, thresholdsGroup(r)...), r)
}

// thresholdsGroup is the group after the schema-2 one: every threshold in
// its canonical form, the fired stage by name, the renewal cycle in
// seconds.
func thresholdsGroup(r *Record) []byte {
	var b []byte
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	b = binary.AppendVarint(b, int64(len(r.Thresholds)))
	for _, t := range r.Thresholds {
		str(t.String())
	}
	str(r.FiredStage)
	return binary.AppendVarint(b, int64(r.RenewalCycle/time.Second))
}

// dayThresholds are the whole-day thresholds of ts, in order.
func dayThresholds(ts []probe.Threshold) []int {
	var out []int
	for _, t := range ts {
		if t.Unit == probe.UnitDays {
			out = append(out, t.N)
		}
	}
	return out
}

// legacyFiredDays is the fired stage as the days number of the earlier
// encoding, for a binary of before the thresholds group (it reads nothing
// after its own groups): a day stage's days, -1 for expired, 0 for none,
// and 1 for an hour or percent stage, so that such a binary fires nothing
// but expiry again.
func legacyFiredDays(stage string) int {
	if stage == string(probe.StageExpired) {
		return -1
	}
	if d, ok := probe.Stage(stage).Days(); ok {
		return d
	}
	if stage != "" {
		return 1
	}
	return 0
}

// firedStageOfDays reads the days number of the earlier encoding.
func firedStageOfDays(days int) string {
	switch {
	case days < 0:
		return string(probe.StageExpired)
	case days > 0:
		return probe.Days(days).String()
	}
	return ""
}

// appendMCPState appends the group of an MCP-level watch: the recent
// window and the tool list. Times are ms deltas, each probe's latency in
// µs doubled plus its success bit: a few bytes each.
func appendMCPState(b []byte, r *Record) []byte {
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	b = binary.AppendVarint(b, int64(len(r.MCPRecent)))
	prev := int64(0)
	for _, p := range r.MCPRecent {
		ms := p.At.UnixMilli()
		b = binary.AppendVarint(b, ms-prev)
		prev = ms
		v := int64(math.Round(max(p.LatencyMS, 0)*1000)) * 2
		if p.OK {
			v++
		}
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendVarint(b, int64(len(r.MCPTools)))
	for _, t := range r.MCPTools {
		str(t.Name)
		str(t.Digest)
	}
	return b
}

// maxListLen bounds every list a record holds (thresholds, roots, CIDRs).
// It guards against a corrupt length only: it is far above what package
// watch accepts, so that everything the validator accepts decodes.
const maxListLen = 1024

var errShortRecord = errors.New("truncated record")

func decodeRecord(raw []byte, r *Record) error {
	if len(raw) > 0 && raw[0] == '{' {
		return decodeRecordJSON(raw, r)
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
	r.Thresholds = make([]probe.Threshold, d.count())
	for i := range r.Thresholds {
		n := d.num()
		if n < 1 && d.err == nil {
			d.err = fmt.Errorf("threshold of %d days", n)
		}
		r.Thresholds[i] = probe.Days(int(n))
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
	r.FiredStage = firedStageOfDays(int(d.num()))
	r.HistoryCount = int(d.num())
	if d.more() {
		r.TransitionCount = int(d.num())
	}
	if d.more() {
		decodeProbeConfig(&d, r)
	}
	if d.more() {
		decodeThresholds(&d, r)
	}
	if d.more() {
		decodeMCPState(&d, r)
	}
	if d.err != nil {
		return fmt.Errorf("record %q: %w", r.ID, d.err)
	}
	return nil
}

// decodeRecordJSON reads a record written as JSON (before the binary
// form), whose fired stage was a number of days.
func decodeRecordJSON(raw []byte, r *Record) error {
	var legacy struct {
		FiredDays int `json:"fired_days"`
	}
	if err := json.Unmarshal(raw, r); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &legacy); err != nil {
		return err
	}
	if r.FiredStage == "" {
		r.FiredStage = firedStageOfDays(legacy.FiredDays)
	}
	return nil
}

// decodeProbeConfig reads the schema-2 group of encodeRecord.
func decodeProbeConfig(d *decoder, r *Record) {
	pc := &ProbeConfig{}
	if n := d.count(); n > 0 {
		pc.Roots = make([][]byte, n)
		for i := range pc.Roots {
			pc.Roots[i] = []byte(d.str())
		}
	}
	pc.ClientCertFile = d.str()
	pc.ClientKeyFile = d.str()
	flags := d.num()
	pc.Policy.DenyPrivate, r.MCP = flags&1 != 0, flags&2 != 0
	pc.Policy.AllowCIDRs = d.strs()
	pc.Policy.DenyCIDRs = d.strs()
	pc.TokenName = d.str()
	if !pc.IsZero() {
		r.Probe = pc
	}
	r.CreatedBy = d.str()
	r.ProbedBy = d.str()
	if raw := d.str(); raw != "" && d.err == nil {
		if r.MCPInfo, d.err = decodeMCPInfo([]byte(raw)); d.err != nil {
			d.err = fmt.Errorf("mcp info: %w", d.err)
		}
	}
}

// decodeMCPInfo reads the MCP info of a record. Before MCP-level watches
// probed, its server was one string (the name); that form still reads.
func decodeMCPInfo(raw []byte) (*probe.MCPInfo, error) {
	var m struct {
		probe.MCPInfo
		Server json.RawMessage `json:"server"` // shadows MCPInfo.Server
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	info := m.MCPInfo
	if len(m.Server) > 0 && m.Server[0] == '"' {
		if err := json.Unmarshal(m.Server, &info.Server.Name); err != nil {
			return nil, err
		}
	} else if len(m.Server) > 0 {
		if err := json.Unmarshal(m.Server, &info.Server); err != nil {
			return nil, err
		}
	}
	return &info, nil
}

// maxTools bounds the tool list of a record: above what mcpcheck lists.
const maxTools = 1 << 16

// decodeMCPState reads the recent window and the tool list of an MCP-level
// watch (encodeRecord).
func decodeMCPState(d *decoder, r *Record) {
	if n := d.count(); n > 0 {
		r.MCPRecent = make([]RecentProbe, n)
		ms := int64(0)
		for i := range r.MCPRecent {
			ms += d.num()
			v := d.num()
			r.MCPRecent[i] = RecentProbe{At: time.UnixMilli(ms).UTC(), OK: v&1 == 1, LatencyMS: float64(v>>1) / 1000}
		}
	}
	n := d.num()
	if n < 0 || n > maxTools {
		if d.err == nil {
			d.err = fmt.Errorf("tool list of %d entries", n)
		}
		return
	}
	if n > 0 {
		r.MCPTools = make([]probe.MCPTool, n)
		for i := range r.MCPTools {
			r.MCPTools[i] = probe.MCPTool{Name: d.str(), Digest: d.str()}
		}
	}
}

// decodeThresholds reads the thresholds group of encodeRecord, which
// replaces what the days-only fields said.
func decodeThresholds(d *decoder, r *Record) {
	ts := make([]probe.Threshold, d.count())
	for i := range ts {
		t, err := probe.ParseThreshold(d.str())
		if err != nil && d.err == nil {
			d.err = fmt.Errorf("threshold: %w", err)
		}
		ts[i] = t
	}
	r.Thresholds = ts
	r.FiredStage = d.str()
	r.RenewalCycle = time.Duration(d.num()) * time.Second
}

type decoder struct {
	b   []byte
	err error
}

// more reports whether another group of fields follows.
func (d *decoder) more() bool { return d.err == nil && len(d.b) > 0 }

// count reads a list length.
func (d *decoder) count() int {
	n := d.num()
	if n < 0 || n > maxListLen {
		if d.err == nil {
			d.err = fmt.Errorf("list of %d entries", n)
		}
		return 0
	}
	return int(n)
}

// strs reads a list of strings; nil when empty.
func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
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
