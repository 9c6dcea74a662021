package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Records are stored in a small binary form, not JSON: loading 100,000 of
// them at start is on the critical path (start to scheduling within 2 s),
// and decoding JSON was most of it. The form is a version byte then
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
	return b
}

// maxListLen bounds every list a record holds (thresholds, roots, CIDRs).
// It guards against a corrupt length only: it is far above what package
// watch accepts, so that everything the validator accepts decodes.
const maxListLen = 1024

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
	r.Thresholds = make([]int, d.count())
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
	if d.more() {
		r.TransitionCount = int(d.num())
	}
	if d.more() {
		decodeProbeConfig(&d, r)
	}
	if d.err != nil {
		return fmt.Errorf("record %q: %w", r.ID, d.err)
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
		r.MCPInfo = new(MCPInfo)
		if err := json.Unmarshal([]byte(raw), r.MCPInfo); err != nil {
			d.err = fmt.Errorf("mcp info: %w", err)
		}
	}
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
