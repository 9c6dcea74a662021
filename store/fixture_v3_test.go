//go:build tlswatch_fixture_v3

package store

// This generator writes testdata/schema3.db with the schema-3 code (commit
// 303c5e9: quarantine, before the compact history), which the history
// migration tests then open with the current code. Run it on a copy of that
// commit:
//
//	mkdir /tmp/tlswatch-303c5e9 && git archive 303c5e9 | tar -x -C /tmp/tlswatch-303c5e9
//	cp store/fixture_v3_test.go /tmp/tlswatch-303c5e9/store/
//	(cd /tmp/tlswatch-303c5e9 && go test -tags tlswatch_fixture_v3 -run TestWriteFixtureV3 ./store/ -fixture-v3 "$PWD/store/testdata/schema3.db")
//
// The file holds three watches with two days of hourly history in the
// schema-1 form (a JSON Report per probe, transitions kept apart): one whose
// certificate rotated (alert state for both certificates), one MCP-level
// watch with a probe configuration and its creator, one that went down
// (outbox entry and mark queued with it); feed entries; and a fourth record
// that does not decode, set aside in the quarantine by the load.

import (
	"flag"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

var fixtureV3Path = flag.String("fixture-v3", "", "write the schema-3 fixture to this path")

func TestWriteFixtureV3(t *testing.T) {
	if *fixtureV3Path == "" {
		t.Skip("no -fixture-v3 path")
	}
	os.Remove(*fixtureV3Path)
	db, err := Open(*fixtureV3Path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 9, 11, 0, 0, 0, 0, time.UTC)
	recs := []Record{
		{ID: "w_00000000000000c1", Target: probe.TargetInfo{Host: "rotated.example", Port: 443}, Schedule: "@every 1h",
			Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: t0, State: "up"},
		{ID: "w_00000000000000c2", Target: probe.TargetInfo{Host: "mcp.example", Port: 443}, Path: "/mcp", Schedule: "@every 1h",
			Thresholds: []probe.Threshold{probe.Days(30), probe.Hours(36)}, FailureThreshold: 3, CreatedAt: t0, State: "up",
			Probe: &ProbeConfig{TokenName: "prod"}, MCP: true, CreatedBy: "alice",
			MCPInfo: &probe.MCPInfo{ProtocolVersion: "2025-11-25", Server: probe.MCPServer{Name: "fixture-server"}, ToolCount: 3, ToolsHash: "sha256:abc", LatencyMS: 12.5}},
		{ID: "w_00000000000000c3", Target: probe.TargetInfo{Host: "down.example", Port: 443}, Schedule: "@every 1h",
			Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: t0, State: "up"},
	}
	for h := 0; h < 48; h++ {
		at := t0.Add(time.Duration(h) * time.Hour)
		var ups []Update
		for i := range recs {
			ups = append(ups, fixtureV3Probe(&recs[i], at, h))
		}
		if _, err := db.Apply(ups); err != nil {
			t.Fatal(err)
		}
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bWatches).Put([]byte("w_00000000000000c4"), []byte{0xff, 0x01, 0x02}); err != nil {
			return err
		}
		return tx.Bucket(bHistory).Put(histKey("w_00000000000000c4", t0), []byte(`{"status":"down"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if bad, err := db.ForEach(func(Record) error { return nil }); err != nil || len(bad) != 1 {
		t.Fatalf("quarantine: %v, %v", bad, err)
	}
}

// fixtureV3Probe is probe h of r at at: rotated.example changes
// certificate at hour 24, down.example goes down at hour 40.
func fixtureV3Probe(r *Record, at time.Time, h int) Update {
	fp, notAfter := "fp-"+r.Target.Host, at.Truncate(24*time.Hour).AddDate(0, 0, 20)
	if r.Target.Host == "rotated.example" && h >= 24 {
		fp, notAfter = "fp-renewed", at.Truncate(24*time.Hour).AddDate(0, 0, 90)
	}
	rep := &probe.Report{Target: r.Target, CheckedAt: at, Status: probe.StatusWarning, Reachable: true, Trusted: true,
		Findings: []probe.Finding{{Code: "CERT_EXPIRING", Severity: "warning", Message: "expires soon"}}, ExpiryStage: "30d",
		Leaf:   &probe.CertInfo{Subject: "CN=" + r.Target.Host, SHA256: fp, NotAfter: notAfter, DaysRemaining: int(notAfter.Sub(at).Hours() / 24)},
		Timing: probe.Timing{DNS: 1.5, Connect: 3 + float64(h%5), Handshake: 20 + float64(h%7), Total: 30 + float64(h%11)}}
	if fp == "fp-renewed" {
		rep.Status, rep.Findings, rep.ExpiryStage = probe.StatusOK, []probe.Finding{}, "none"
	}
	down := r.Target.Host == "down.example" && h >= 40
	if down {
		rep = &probe.Report{Target: r.Target, CheckedAt: at, Status: probe.StatusDown, ExpiryStage: "none",
			Findings: []probe.Finding{{Code: "CONNECT_REFUSED", Severity: "critical", Message: "refused"}}, Timing: probe.Timing{DNS: 1.5, Total: 2}}
	}
	u := Update{Record: *r, Create: h == 0, Report: rep, Transition: h == 0 || r.LastStatus != string(rep.Status) || r.Fingerprint != fp && !down}
	r.LastCheckedAt, r.LastStatus, r.UpdatedAt = at, string(rep.Status), at
	if down {
		r.ConsecutiveFailures++
		if r.ConsecutiveFailures == 3 {
			r.State = "down"
			u.Feed = []FeedEntry{{Time: at, Kind: "watch_down", Level: "error", WatchID: r.ID, Target: r.Target.Host + ":443"}}
			u.InTx = func(tx OutboxTx) error {
				return tx.Enqueue(map[string]bool{"alert\x00hook\x00" + r.ID + "\x00down": true},
					OutboxEntry{Channel: "hook", Payload: []byte(`{"id":"d_down"}`), CreatedAt: at})
			}
		}
	} else {
		r.NotAfter, r.Fingerprint = notAfter, fp
	}
	if u.Transition && !down {
		u.Alert = &Alert{Fingerprint: fp, NotAfter: notAfter, FirstSeen: at, Stages: []string{"30d"}}
		if fp == "fp-renewed" {
			u.Alert.Stages = []string{}
		}
		r.FiredStage = u.Alert.Fired()
		u.Record.FiredStage = r.FiredStage
	}
	if h == 0 {
		u.Feed = []FeedEntry{{Time: at, Kind: "watch_added", Level: "info", WatchID: r.ID, Target: r.Target.Host + ":443"}}
	}
	u.Record = *r
	return u
}
