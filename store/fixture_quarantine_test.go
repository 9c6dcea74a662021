//go:build tlswatch_fixture_quarantine

package store

// This generator writes testdata/schema2-quarantine.db with the schema-2
// code (commit 6617a88), which the quarantine tests then open with the
// current code. It does not build against the current API on purpose
// (Thresholds []int): run it on a checkout of that commit.
//
//	git worktree add /tmp/tlswatch-6617a88 6617a88
//	cp store/fixture_quarantine_test.go /tmp/tlswatch-6617a88/store/
//	(cd /tmp/tlswatch-6617a88 && go test -tags tlswatch_fixture_quarantine -run TestWriteFixtureQuarantine ./store/ -fixture-quarantine "$PWD/store/testdata/schema2-quarantine.db")
//
// The file holds three watches that decode (plain; one carrying a probe
// configuration, MCP info and its creator; one down) with their history,
// one feed entry and one outbox entry, and a fourth record that the
// schema-2 code cannot decode (its thresholds count is 65,000, past what
// the decoder accepts, as a corrupted length would be), written with its
// target, expiry and down index entries and a history entry.

import (
	"encoding/binary"
	"flag"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
)

var fixtureQPath = flag.String("fixture-quarantine", "", "write the schema-2 quarantine fixture to this path")

func TestWriteFixtureQuarantine(t *testing.T) {
	if *fixtureQPath == "" {
		t.Skip("no -fixture-quarantine path")
	}
	os.Remove(*fixtureQPath)
	db, err := Open(*fixtureQPath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	rep := func(host string, status probe.Status, days int) *probe.Report {
		r := &probe.Report{Target: probe.TargetInfo{Host: host, Port: 443}, CheckedAt: at, Status: status, Findings: []probe.Finding{}, ExpiryStage: "none"}
		if days != 0 {
			r.Leaf = &probe.CertInfo{Subject: "CN=" + host, SHA256: "fp-" + host, NotAfter: at.AddDate(0, 0, days), DaysRemaining: days}
		}
		return r
	}
	recs := []Record{
		{ID: "w_0000000000000001", Target: probe.TargetInfo{Host: "plain.example", Port: 443}, Schedule: "@every 6h",
			Thresholds: []int{30, 14, 7, 1}, FailureThreshold: 3, CreatedAt: at, UpdatedAt: at, State: "up",
			LastCheckedAt: at, LastStatus: "ok", NotAfter: at.AddDate(0, 0, 90), Fingerprint: "fp-plain.example"},
		{ID: "w_0000000000000002", Target: probe.TargetInfo{Host: "mcp.example", Port: 443}, Path: "/mcp", Schedule: "@every 1h",
			Thresholds: []int{14, 7}, FailureThreshold: 3, CreatedAt: at, UpdatedAt: at, State: "up", LastCheckedAt: at,
			LastStatus: "ok", NotAfter: at.AddDate(0, 0, 60), Fingerprint: "fp-mcp.example", MCP: true, CreatedBy: "alice",
			Probe: &ProbeConfig{Roots: [][]byte{[]byte("not-really-der")}, TokenName: "prod",
				Policy: netpolicy.Config{DenyPrivate: true, AllowCIDRs: []string{"192.0.2.0/24"}}},
			MCPInfo: &MCPInfo{ProtocolVersion: "2025-11-25", Server: "demo", ToolCount: 3, ToolsHash: "h", LatencyMS: 12}},
		{ID: "w_0000000000000004", Target: probe.TargetInfo{Host: "down.example", Port: 443}, Schedule: "@every 1m",
			Thresholds: []int{30, 14, 7, 1}, FailureThreshold: 3, CreatedAt: at, UpdatedAt: at, State: "down",
			ConsecutiveFailures: 3, LastCheckedAt: at, LastStatus: "down"},
	}
	var ups []Update
	for i, r := range recs {
		status, days := probe.StatusOK, []int{90, 60, 0}[i]
		if r.State == "down" {
			status = probe.StatusDown
		}
		ups = append(ups, Update{Record: r, Create: true, Report: rep(r.Target.Host, status, days), Transition: true,
			Feed: []FeedEntry{{Time: at, Kind: "watch_added", Level: "info", WatchID: r.ID, Target: r.Target.Host + ":443"}}[:i%2]})
	}
	ups[0].InTx = func(tx OutboxTx) error {
		return tx.Enqueue(map[string]bool{"alert\x00hook\x00w_0000000000000001\x00up": true},
			OutboxEntry{Channel: "hook", Payload: []byte(`{"id":"d_1"}`), CreatedAt: at})
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	if err := writeUndecodable(db, at); err != nil {
		t.Fatal(err)
	}
}

// writeUndecodable writes w_0000000000000003: a record whose list length
// the decoder refuses, with its index entries and one report.
func writeUndecodable(db *DB, at time.Time) error {
	bad := Record{ID: "w_0000000000000003", Target: probe.TargetInfo{Host: "bad.example", Port: 443}, Schedule: "@every 6h",
		Thresholds: make([]int, 65), FailureThreshold: 3, CreatedAt: at, UpdatedAt: at, State: "down",
		LastCheckedAt: at, LastStatus: "down", NotAfter: at.AddDate(0, 0, 10)}
	raw := encodeRecord(&bad)
	// The decoder of that time bounds lists at maxListLen; make the count
	// of thresholds exceed it as a corrupted length would.
	raw = corruptThresholdCount(raw, &bad)
	return db.bolt.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bWatches).Put([]byte(bad.ID), raw); err != nil {
			return err
		}
		if err := tx.Bucket(bTargets).Put([]byte(bad.Identity()), []byte(bad.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bExpiry).Put(expiryKey(bad.NotAfter, bad.ID), nil); err != nil {
			return err
		}
		if err := tx.Bucket(bDown).Put([]byte(bad.ID), nil); err != nil {
			return err
		}
		return tx.Bucket(bHistory).Put(histKey(bad.ID, at), []byte(`{"status":"down"}`))
	})
}

// corruptThresholdCount rewrites the thresholds count of an encoded record
// to 65,000 (a varint the decoder reads as a list too long to hold).
func corruptThresholdCount(raw []byte, r *Record) []byte {
	var head []byte
	head = append(head, raw[0])
	str := func(s string) { head = binary.AppendUvarint(head, uint64(len(s))); head = append(head, s...) }
	num := func(n int64) { head = binary.AppendVarint(head, n) }
	str(r.ID)
	str(r.Target.Host)
	num(int64(r.Target.Port))
	str(r.Target.SNI)
	str(r.Target.IP)
	str(r.Path)
	str(r.Scheme)
	num(int64(r.TimeoutMS))
	str(r.Schedule)
	rest := raw[len(head):]
	_, n := binary.Varint(rest)
	out := append(head, binary.AppendVarint(nil, 65000)...)
	return append(out, rest[n:]...)
}
