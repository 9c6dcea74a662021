package store

import (
	"reflect"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// FuzzDecodeRecord: whatever bytes a damaged or hostile bbolt file holds
// under a watch key, decoding returns an error or a record, never a panic,
// and a record decoded from the binary form survives a re-encode unchanged.
// Seeds live in testdata/fuzz/FuzzDecodeRecord.
func FuzzDecodeRecord(f *testing.F) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	full := &Record{
		ID:     "w_3f9a",
		Target: probe.TargetInfo{Host: "mcp.example.com", Port: 443, SNI: "mcp.example.com", IP: "203.0.113.7"},
		Path:   "/mcp", Scheme: "smtp", TimeoutMS: 3000, Schedule: "@every 6h",
		Thresholds: []probe.Threshold{probe.Days(30), probe.Hours(36), probe.Percent(20), probe.Days(1)}, FailureThreshold: 3, ClientCert: "client.pem",
		CreatedAt: t0, UpdatedAt: t0.Add(time.Minute), State: "up", ConsecutiveFailures: 2,
		LastCheckedAt: t0.Add(time.Hour), LastStatus: "ok", NotAfter: t0.Add(90 * 24 * time.Hour),
		Fingerprint: "ab12", FiredStage: "36h", RenewalCycle: 60 * 24 * time.Hour, HistoryCount: 17,
	}
	f.Add(encodeRecord(full))
	f.Add(encodeRecord(&Record{}))
	f.Add([]byte(`{"id":"w_1","target":{"host":"a.example","port":443},"schedule":"@every 1s","thresholds_days":[30]}`))
	f.Add([]byte{recordCodecV1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r Record
		if err := decodeRecord(raw, &r); err != nil {
			return
		}
		if len(raw) == 0 || raw[0] != recordCodecV1 {
			return // JSON form: json.Unmarshal's own business
		}
		if len(r.Thresholds) > maxListLen {
			t.Fatalf("decoded %d thresholds, the codec allows %d", len(r.Thresholds), maxListLen)
		}
		var again Record
		if err := decodeRecord(encodeRecord(&r), &again); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("re-encoding changed the record:\n%+v\n%+v", r, again)
		}
	})
}

// FuzzDecodeHistory: whatever bytes a damaged file holds under a history
// key, each decoder returns an error or a value, never a panic, and a value
// that decodes re-encodes to something that decodes to the same.
func FuzzDecodeHistory(f *testing.F) {
	var day dayAggs
	day.hours[3].add(stOK, 12000)
	day.hours[3].add(stDown, 0)
	day.hours[9].add(stWarning, 800)
	day.mask = 1<<3 | 1<<9
	f.Add(day.encode())
	blk, st := newBlock(rawSample{at: 1_780_000_000_000, status: stOK, ref: ref{1}, lat: [3]int64{1, 500, 9000}})
	blk = st.appendSample(blk, rawSample{at: 1_780_000_001_000, status: stDown, ref: ref{2}})
	f.Add(blk)
	hd := head{wnum: 7, changedAt: 5, open: openBlock{ms: 1_780_000_000_000, len: len(blk), st: st}}
	f.Add(hd.encode())
	f.Add([]byte{kindChange, 1, 2, 3, 4, 5, 6, 7, 8, 2})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if v, err := decodeDayAggs(raw); err == nil {
			w := v.whole()
			again, err := decodeDayAggs(v.encode())
			if aw := again.whole(); err != nil || again.mask != v.mask || aw.probes() != w.probes() {
				t.Fatalf("day aggregates do not survive a re-encode: %v", err)
			}
		}
		decodeBlock(0, raw, nil)
		if h, err := decodeHead(raw); err == nil {
			if again, err := decodeHead(h.encode()); err != nil || again.wnum != h.wnum || again.open != h.open {
				t.Fatalf("head does not survive a re-encode: %v", err)
			}
		}
		for _, n := range []int{0, 8, 12} {
			if len(raw) >= n {
				decodeChange(raw[:n], raw[n:])
				blockKeyMS(raw[:n])
				aggKeyDay(raw[:n])
			}
		}
		applyDelta([]byte(`{"a":1,"b":"two"}`), raw)
		bodyBase(raw)
	})
}
