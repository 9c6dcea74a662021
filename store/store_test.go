package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
)

func openTest(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tlswatch.db")
	db, err := Open(path, Options{Now: func() time.Time { return t0.Add(24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func rec(id, host string) Record {
	return Record{ID: id, Target: probe.TargetInfo{Host: host, Port: 443}, Schedule: "@every 1h",
		Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: t0, State: "pending"}
}

func report(at time.Time, status probe.Status) *probe.Report {
	return &probe.Report{CheckedAt: at, Status: status, Findings: []probe.Finding{}, ExpiryStage: "none"}
}

func TestApplyGetHistory(t *testing.T) {
	db, _ := openTest(t)
	r := rec("w_1", "a.test")
	// Without Create an unknown watch is not resurrected.
	ok, err := db.Apply([]Update{{Record: r, Report: report(t0, "ok")}})
	if err != nil || ok[0] {
		t.Fatalf("update of missing watch: applied=%v err=%v", ok, err)
	}
	if _, err := db.Get("w_1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	if _, err := db.Apply([]Update{{Record: r, Create: true}}); err != nil {
		t.Fatal(err)
	}
	// 600 reports in groups; one is a transition.
	for g := 0; g < 6; g++ {
		var ups []Update
		for i := 0; i < 100; i++ {
			n := g*100 + i
			ups = append(ups, Update{Record: r, Report: report(t0.Add(time.Duration(n)*time.Minute), "ok"), Transition: n == 3})
		}
		if _, err := db.Apply(ups); err != nil {
			t.Fatal(err)
		}
	}
	v, err := db.Get("w_1")
	if err != nil {
		t.Fatal(err)
	}
	if v.Record.HistoryCount != 600 {
		t.Errorf("HistoryCount = %d, want 600 probes recorded", v.Record.HistoryCount)
	}
	if want := t0.Add(599 * time.Minute); v.LastReport == nil || !v.LastReport.CheckedAt.Equal(want) {
		t.Errorf("last report = %+v, want checked_at %v", v.LastReport, want)
	}
	raw, err := db.Query("w_1", HistoryQuery{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	if h := raw.Samples; len(h) != 500 || !raw.More || !h[0].At.Equal(t0.Add(599*time.Minute)) || !h[len(h)-1].At.Equal(t0.Add(100*time.Minute)) {
		t.Errorf("history: %d samples, newest %v, oldest %v", len(h), h[0].At, h[len(h)-1].At)
	}
	if v.LastReport.Findings == nil || raw.Reports[0].Report.Findings == nil {
		t.Error("findings decoded as nil, want [] (JSON contract)")
	}
	// The first probe is a change (nothing before it); the forced one is
	// kept as a change too although nothing in it changed.
	page, err := db.Query("w_1", HistoryQuery{Resolution: ResolutionHour})
	if err != nil || len(page.Reports) != 2 || !page.Reports[0].At.Equal(t0.Add(3*time.Minute)) || !page.Reports[1].At.Equal(t0) {
		t.Errorf("stored changes = %v, %v; want the forced transition and the first probe", page.Reports, err)
	}
	if v.Record.TransitionCount != 2 {
		t.Errorf("TransitionCount = %d", v.Record.TransitionCount)
	}
	// Same timestamp twice: both kept.
	if _, err := db.Apply([]Update{{Record: r, Report: report(t0.Add(time.Hour*100), "ok")}, {Record: r, Report: report(t0.Add(time.Hour*100), "down")}}); err != nil {
		t.Fatal(err)
	}
	if p, _ := db.Query("w_1", HistoryQuery{Limit: 2}); len(p.Samples) != 2 || p.Samples[0].Status != "down" || p.Samples[1].Status != "ok" {
		t.Errorf("same-timestamp probes: %+v", p.Samples)
	}
	if _, err := db.Query("w_nope", HistoryQuery{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("history of a missing watch: %v", err)
	}
}

func TestExpiringIndexAndDelete(t *testing.T) {
	db, path := openTest(t)
	now := t0
	mk := func(id string, days int, state string) Record {
		r := rec(id, id+".test")
		r.State = state
		if days != 0 {
			r.NotAfter = now.Add(time.Duration(days) * 24 * time.Hour)
			r.Fingerprint = "fp-" + id
		}
		return r
	}
	ups := []Update{
		{Record: mk("w_a", 40, "up"), Create: true},
		{Record: mk("w_b", 5, "up"), Create: true},
		{Record: mk("w_c", -2, "up"), Create: true},    // expired
		{Record: mk("w_d", 0, "down"), Create: true},   // down, never had a cert
		{Record: mk("w_e", 100, "down"), Create: true}, // down, cert far out
		{Record: mk("w_f", 20, "up"), Create: true},
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	got, err := db.ExpiringIDs(now.Add(31 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := "[w_c w_b w_f w_d w_e]"; fmt.Sprint(got) != want {
		t.Errorf("Expiring = %v, want %v", got, want)
	}
	// Renewal moves w_b out of the window; w_e comes back up.
	b := mk("w_b", 90, "up")
	e := mk("w_e", 100, "up")
	if _, err := db.Apply([]Update{{Record: b}, {Record: e}}); err != nil {
		t.Fatal(err)
	}
	got, _ = db.ExpiringIDs(now.Add(31 * 24 * time.Hour))
	if want := "[w_c w_f w_d]"; fmt.Sprint(got) != want {
		t.Errorf("after renewal Expiring = %v, want %v", got, want)
	}
	if id, err := db.Lookup(Identity(probe.TargetInfo{Host: "w_f.test", Port: 443}, "")); err != nil || id != "w_f" {
		t.Errorf("Lookup = %q, %v", id, err)
	}
	if _, err := db.Apply([]Update{{Record: mk("w_f", 20, "up"), Report: report(now, "ok"),
		Alert: &Alert{Fingerprint: "fp-w_f", Stages: []string{"30d"}}}}); err != nil {
		t.Fatal(err)
	}
	if a, ok, err := db.Alert("w_f", "fp-w_f"); err != nil || !ok || a.Fired() != "30d" {
		t.Errorf("Alert = %+v %v %v", a, ok, err)
	}
	if _, err := db.Delete("w_f"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Delete("w_f"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
	got, _ = db.ExpiringIDs(now.Add(31 * 24 * time.Hour))
	if want := "[w_c w_d]"; fmt.Sprint(got) != want {
		t.Errorf("after delete Expiring = %v, want %v", got, want)
	}
	if _, ok, _ := db.Alert("w_f", "fp-w_f"); ok {
		t.Error("alert state survived Delete")
	}
	if _, err := db.Lookup(Identity(probe.TargetInfo{Host: "w_f.test", Port: 443}, "")); !errors.Is(err, ErrNotFound) {
		t.Errorf("target index survived Delete: %v", err)
	}
	// Reopen: everything is on disk.
	db.Close()
	db2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	all, err := db2.List()
	if err != nil || len(all) != 5 {
		t.Fatalf("after reopen List: %d, %v", len(all), err)
	}
}

func TestLockTimeoutAndSchema(t *testing.T) {
	db, path := openTest(t)
	start := time.Now()
	_, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v", d)
	}
	if v, err := db.Schema(); err != nil || v != SchemaVersion {
		t.Errorf("Schema = %d, %v", v, err)
	}
	db.Close()
	// A file from a newer binary is refused, not clobbered.
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bolt.Tx) error {
		var buf [4]byte
		binary.BigEndian.PutUint32(buf[:], SchemaVersion+1)
		return tx.Bucket(bMeta).Put(kSchema, buf[:])
	})
	b.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrNewerSchema) {
		t.Errorf("Open newer schema: %v", err)
	}
}

func TestAlertPruning(t *testing.T) {
	db, _ := openTest(t)
	r := rec("w_1", "a.test")
	if _, err := db.Apply([]Update{{Record: r, Create: true}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxAlertsPerWatch+3; i++ {
		a := &Alert{Fingerprint: fmt.Sprintf("fp%02d", i), FirstSeen: t0.Add(time.Duration(i) * time.Hour)}
		if _, err := db.Apply([]Update{{Record: r, Alert: a}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := db.Alert("w_1", "fp00"); ok {
		t.Error("oldest alert state not pruned")
	}
	if _, ok, _ := db.Alert("w_1", fmt.Sprintf("fp%02d", maxAlertsPerWatch+2)); !ok {
		t.Error("newest alert state missing")
	}
}

func TestRecordCodec(t *testing.T) {
	r := Record{ID: "w_0123456789abcdef", Target: probe.TargetInfo{Host: "ä.test", Port: 8443, SNI: "s.test", IP: "::1"},
		Path: "/mcp", Scheme: "smtp", TimeoutMS: 2500, Schedule: "0 9 * * 1-5", Thresholds: []probe.Threshold{probe.Days(60), probe.Hours(12), probe.Percent(5), probe.Days(7)},
		FailureThreshold: 5, ClientCert: "/x.pem", CreatedAt: t0, UpdatedAt: t0.Add(time.Second),
		State: "down", ConsecutiveFailures: 7, LastCheckedAt: t0.Add(time.Hour), LastStatus: "down",
		NotAfter: t0.Add(-time.Hour), Fingerprint: "ab", FiredStage: "expired", RenewalCycle: 8 * time.Hour, HistoryCount: 500, TransitionCount: 12}
	var got Record
	if err := decodeRecord(encodeRecord(&r), &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", r) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
	}
	var zero Record
	if err := decodeRecord(encodeRecord(&Record{ID: "w_1"}), &zero); err != nil || !zero.LastCheckedAt.IsZero() || zero.ID != "w_1" {
		t.Errorf("zero times: %+v %v", zero, err)
	}
	// JSON (older files) still reads.
	var j Record
	if err := decodeRecord([]byte(`{"id":"w_2","schedule":"@hourly"}`), &j); err != nil || j.Schedule != "@hourly" {
		t.Errorf("JSON record: %+v %v", j, err)
	}
	raw := encodeRecord(&r)
	// r has no MCP state: its MCP group is two empty lists (window, tools).
	// Without it the value is what the code before MCP-level watches wrote.
	const mcpGroup = 2
	raw = raw[:len(raw)-mcpGroup]
	var beforeMCP Record
	if err := decodeRecord(raw, &beforeMCP); err != nil || fmt.Sprintf("%+v", beforeMCP) != fmt.Sprintf("%+v", r) {
		t.Errorf("value without the MCP group: %+v %v", beforeMCP, err)
	}
	// Without the thresholds group too, what the code before it wrote:
	// whole-day thresholds only, the fired stage as days.
	raw = raw[:len(raw)-len(thresholdsGroup(&r))]
	var days Record
	if err := decodeRecord(raw, &days); err != nil || fmt.Sprint(days.Thresholds) != "[60d 7d]" || days.FiredStage != "expired" || days.RenewalCycle != 0 {
		t.Errorf("days-only value: %+v %v", days, err)
	}
	// r has no probe configuration: its schema-2 group is ten empty fields.
	// Without that group it is a schema-1 value; one field less, a value
	// from before TransitionCount existed.
	const schema2Group = 10
	var s1 Record
	if err := decodeRecord(raw[:len(raw)-schema2Group], &s1); err != nil || s1.TransitionCount != 12 || s1.Probe != nil {
		t.Errorf("schema-1 value: %+v %v", s1, err)
	}
	var older Record
	if err := decodeRecord(raw[:len(raw)-schema2Group-1], &older); err != nil || older.TransitionCount != 0 || older.HistoryCount != 500 {
		t.Errorf("older value: %+v %v", older, err)
	}
	if err := decodeRecord(raw[:len(raw)-3], &got); err == nil {
		t.Error("a record cut inside its schema-2 group decoded")
	}
	enc := encodeRecord(&r)
	if err := decodeRecord(enc[:len(enc)-mcpGroup-2], &got); err == nil {
		t.Error("a record cut inside its thresholds group decoded")
	}
	full := r
	full.Probe = &ProbeConfig{Roots: [][]byte{{1, 2, 3}, {4}}, ClientCertFile: "/etc/c.pem", ClientKeyFile: "/etc/k.pem",
		Policy:    netpolicy.Config{DenyPrivate: true, AllowCIDRs: []string{"10.1.0.0/16"}, DenyCIDRs: []string{"192.0.2.0/24", "::1/128"}},
		TokenName: "prod"}
	full.MCP, full.CreatedBy, full.ProbedBy = true, "alice", "node-2"
	full.MCPInfo = &probe.MCPInfo{ProtocolVersion: "2025-11-25", Server: probe.MCPServer{Name: "srv", Version: "1.2"}, ToolCount: 2,
		ToolsHash: "ab", LatencyMS: 1.5}
	full.MCPTools = []probe.MCPTool{{Name: "a", Digest: "0123"}, {Name: "b", Digest: "4567"}}
	full.MCPRecent = []RecentProbe{{At: t0, OK: true, LatencyMS: 12.345}, {At: t0.Add(time.Minute), LatencyMS: 0},
		{At: t0.Add(2*time.Minute + time.Millisecond), OK: true, LatencyMS: 3000.001}}
	var gotFull Record
	if err := decodeRecord(encodeRecord(&full), &gotFull); err != nil || !reflect.DeepEqual(gotFull, full) {
		t.Errorf("probe configuration round trip:\n got %+v\nwant %+v (%v)", gotFull, full, err)
	}
	if err := decodeRecord(raw[:len(raw)/2], &got); err == nil {
		t.Error("truncated record decoded")
	}
	// The JSON form (what a store shared by cluster nodes may keep) holds
	// the MCP state too.
	js, err := json.Marshal(&full)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON Record
	if err := decodeRecord(js, &fromJSON); err != nil || !reflect.DeepEqual(fromJSON.MCPTools, full.MCPTools) ||
		!reflect.DeepEqual(fromJSON.MCPRecent, full.MCPRecent) || !reflect.DeepEqual(fromJSON.MCPInfo, full.MCPInfo) {
		t.Errorf("JSON round trip: %+v (%v)", fromJSON, err)
	}
	if err := decodeRecord(encodeRecord(&full)[:len(encodeRecord(&full))-2], &got); err == nil {
		t.Error("a record cut inside its MCP group decoded")
	}
}

// TestMCPStateOfEarlierRecords reads the MCP-level watches of files the
// code before MCP-level watches probed wrote: schema2-days.db (6617a88,
// fixture_v2_test.go) and schema2-mcp.db (6b75e30, with the thresholds
// group; fixture_mcp_test.go). Their MCP info kept the server as one
// string, which now reads as the server's name; they have no tool list or
// recent window, and a write by the current code keeps everything.
func TestMCPStateOfEarlierRecords(t *testing.T) {
	for _, c := range []struct {
		file, id string
		want     probe.MCPInfo
		th       string
	}{
		{"schema2-days.db", "w_00000000000000a3",
			probe.MCPInfo{ProtocolVersion: "2025-11-25", Server: probe.MCPServer{Name: "demo 1.0"}, ToolCount: 3, ToolsHash: "h1", LatencyMS: 12.5}, "[21d]"},
		{"schema2-mcp.db", "w_00000000000000a1",
			probe.MCPInfo{ProtocolVersion: "2025-11-25", Server: probe.MCPServer{Name: "fixture-server"}, ToolCount: 3, ToolsHash: "sha256:abc", LatencyMS: 12.5}, "[30d 36h]"},
	} {
		t.Run(c.file, func(t *testing.T) {
			db, err := Open(copyFixture(t, c.file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			v, err := db.Get(c.id)
			if err != nil {
				t.Fatal(err)
			}
			r := v.Record
			if !reflect.DeepEqual(r.MCPInfo, &c.want) || !r.MCP || r.Probe == nil || r.Probe.TokenName != "prod" ||
				r.MCPTools != nil || r.MCPRecent != nil || fmt.Sprint(r.Thresholds) != c.th || r.CreatedBy != "alice" {
				t.Errorf("record: %+v\nmcp %+v", r, r.MCPInfo)
			}
			r.MCPRecent = []RecentProbe{{At: r.CreatedAt, OK: true, LatencyMS: 9}}
			r.MCPTools = []probe.MCPTool{{Name: "a", Digest: "0123456789abcdef"}}
			if _, err := db.Apply([]Update{{Record: r}}); err != nil {
				t.Fatal(err)
			}
			v2, err := db.Get(c.id)
			if err != nil || !reflect.DeepEqual(v2.Record.MCPInfo, &c.want) || len(v2.Record.MCPRecent) != 1 || len(v2.Record.MCPTools) != 1 ||
				fmt.Sprint(v2.Record.Thresholds) != c.th {
				t.Errorf("after a write: %+v %v", v2.Record, err)
			}
		})
	}
}
