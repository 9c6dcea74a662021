//go:build tlswatch_fixture_v2

package store

// This generator writes testdata/schema2-days.db with the code of commit
// 6617a88 (schema 2, thresholds in whole days only, the fired stage as a
// number of days), which the tests of the threshold encoding then open with
// the current code. It does not build against the current API on purpose
// (Thresholds []int, FiredDays): run it on a checkout of that commit.
//
//	git worktree add /tmp/tlswatch-6617a88 6617a88
//	cp store/fixture_v2_test.go /tmp/tlswatch-6617a88/store/
//	(cd /tmp/tlswatch-6617a88 && go test -tags tlswatch_fixture_v2 -run TestWriteFixtureV2 ./store/ -fixture "$PWD/store/testdata/schema2-days.db")
//
// The file holds three watches: default thresholds with nothing fired, a
// custom list whose certificate fired 30d then 7d (and an older one that
// expired), and a watch with a probe configuration (roots, policy, client
// certificate files) and MCP details, so that the schema-2 group precedes
// whatever later groups add.

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
)

var fixturePath = flag.String("fixture", "", "write the schema-2 fixture to this path")

func TestWriteFixtureV2(t *testing.T) {
	if *fixturePath == "" {
		t.Skip("no -fixture path")
	}
	os.Remove(*fixturePath)
	db, err := Open(*fixturePath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	recs := []Record{
		{ID: "w_00000000000000a1", Target: probe.TargetInfo{Host: "plain.example", Port: 443}, Schedule: "@every 6h",
			Thresholds: []int{30, 14, 7, 1}, FailureThreshold: 3, CreatedAt: at, UpdatedAt: at, State: "up",
			LastCheckedAt: at, LastStatus: "ok", NotAfter: at.AddDate(0, 0, 80), Fingerprint: "fp-a1"},
		{ID: "w_00000000000000a2", Target: probe.TargetInfo{Host: "fired.example", Port: 443}, Schedule: "@every 1h",
			Thresholds: []int{45, 7}, FailureThreshold: 3, CreatedAt: at, UpdatedAt: at, State: "up",
			LastCheckedAt: at, LastStatus: "critical", NotAfter: at.AddDate(0, 0, 5), Fingerprint: "fp-a2", FiredDays: 7},
		{ID: "w_00000000000000a3", Target: probe.TargetInfo{Host: "configured.example", Port: 8443}, Schedule: "@every 1h",
			Thresholds: []int{21}, FailureThreshold: 2, ClientCert: "ops", CreatedAt: at, UpdatedAt: at, State: "pending",
			Probe: &ProbeConfig{Roots: [][]byte{[]byte("der-1"), []byte("der-2")}, ClientCertFile: "/etc/c.pem", ClientKeyFile: "/etc/k.pem",
				Policy: netpolicy.Config{DenyPrivate: true, AllowCIDRs: []string{"10.1.0.0/16"}}, TokenName: "prod"},
			MCP: true, CreatedBy: "alice", ProbedBy: "node-1",
			MCPInfo: &MCPInfo{ProtocolVersion: "2025-11-25", Server: "demo 1.0", ToolCount: 3, ToolsHash: "h1", LatencyMS: 12.5}},
	}
	var ups []Update
	for _, r := range recs {
		ups = append(ups, Update{Record: r, Create: true})
	}
	ups = append(ups,
		Update{Record: recs[1], Alert: &Alert{Fingerprint: "fp-a2", NotAfter: at.AddDate(0, 0, 5), FirstSeen: at.AddDate(0, 0, -40), FiredDays: 7, Stages: []string{"45d", "7d"}}},
		Update{Record: recs[1], Alert: &Alert{Fingerprint: "fp-old", NotAfter: at.AddDate(0, 0, -50), FirstSeen: at.AddDate(0, 0, -140), FiredDays: -1, Stages: []string{"45d", "7d", "expired"}}},
	)
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
}
