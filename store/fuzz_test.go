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
