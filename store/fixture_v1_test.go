//go:build tlswatch_fixture_v1

package store

// This generator writes testdata/schema1.db with the schema-1 code (commit
// c6bcee9), which the migration tests then open with the current code. It
// does not build against the current API on purpose (NewOutbox, Bolt):
// run it on a checkout of that commit.
//
//	git worktree add /tmp/tlswatch-c6bcee9 c6bcee9
//	cp store/fixture_v1_test.go /tmp/tlswatch-c6bcee9/store/
//	(cd /tmp/tlswatch-c6bcee9 && go test -tags tlswatch_fixture_v1 -run TestWriteFixtureV1 ./store/ -fixture "$PWD/store/testdata/schema1.db")
//
// The file holds four watches (plain, ip+sni, STARTTLS with a path and a
// client certificate, down), their history and transitions, the alert state
// of three certificates (one with fired stages) and three outbox entries
// with two marks.

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

var fixturePath = flag.String("fixture", "", "write the schema-1 fixture to this path")

func TestWriteFixtureV1(t *testing.T) {
	if *fixturePath == "" {
		t.Skip("no -fixture path")
	}
	os.Remove(*fixturePath)
	db, err := Open(*fixturePath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	leaf := func(fp string, days int) *probe.CertInfo {
		return &probe.CertInfo{Subject: "CN=fixture", SHA256: fp, NotAfter: at.AddDate(0, 0, days), DaysRemaining: days}
	}
	rep := func(status probe.Status, l *probe.CertInfo, min int) *probe.Report {
		r := &probe.Report{CheckedAt: at.Add(time.Duration(min) * time.Minute), Status: status, Findings: []probe.Finding{}, ExpiryStage: "none", Leaf: l}
		if status == probe.StatusDown {
			r.Findings = []probe.Finding{{Code: "connection_refused", Severity: "critical", Message: "refused"}}
		}
		return r
	}
	recs := []Record{
		{ID: "w_0000000000000001", Target: probe.TargetInfo{Host: "plain.example", Port: 443}, Schedule: "@every 6h",
			Thresholds: []int{30, 14, 7, 1}, FailureThreshold: 3, CreatedAt: at, UpdatedAt: at, State: "up",
			LastCheckedAt: at.Add(2 * time.Minute), LastStatus: "ok", NotAfter: at.AddDate(0, 0, 90), Fingerprint: "fp-plain"},
		{ID: "w_0000000000000002", Target: probe.TargetInfo{Host: "pinned.example", Port: 8443, SNI: "sni.example", IP: "192.0.2.7"},
			Schedule: "0 */2 * * *", Thresholds: []int{21, 7}, FailureThreshold: 5, TimeoutMS: 3000, CreatedAt: at, UpdatedAt: at,
			State: "up", LastCheckedAt: at.Add(2 * time.Minute), LastStatus: "warning", NotAfter: at.AddDate(0, 0, 5),
			Fingerprint: "fp-pinned", FiredDays: 7},
		{ID: "w_0000000000000003", Target: probe.TargetInfo{Host: "mail.example", Port: 587}, Scheme: "smtp", Path: "/x",
			ClientCert: "ops", Schedule: "@every 1h", Thresholds: []int{30, 14, 7, 1}, FailureThreshold: 3,
			CreatedAt: at, UpdatedAt: at, State: "pending"},
		{ID: "w_0000000000000004", Target: probe.TargetInfo{Host: "down.example", Port: 443}, Schedule: "@every 1m",
			Thresholds: []int{30, 14, 7, 1}, FailureThreshold: 3, CreatedAt: at, UpdatedAt: at, State: "down",
			ConsecutiveFailures: 4, LastCheckedAt: at.Add(2 * time.Minute), LastStatus: "down"},
	}
	var ups []Update
	for _, r := range recs {
		ups = append(ups, Update{Record: r, Create: true})
	}
	ups = append(ups,
		Update{Record: recs[0], Report: rep("ok", leaf("fp-plain", 90), 1), Transition: true,
			Alert: &Alert{Fingerprint: "fp-plain", NotAfter: at.AddDate(0, 0, 90), FirstSeen: at, Stages: []string{}}},
		Update{Record: recs[0], Report: rep("ok", leaf("fp-plain", 90), 2)},
		Update{Record: recs[1], Report: rep("warning", leaf("fp-pinned", 5), 2), Transition: true,
			Alert: &Alert{Fingerprint: "fp-pinned", NotAfter: at.AddDate(0, 0, 5), FirstSeen: at, FiredDays: 7, Stages: []string{"30d", "7d"}}},
		Update{Record: recs[1], Alert: &Alert{Fingerprint: "fp-old", NotAfter: at.AddDate(0, 0, -1), FirstSeen: at.AddDate(0, 0, -60), FiredDays: -1, Stages: []string{"expired"}}},
		Update{Record: recs[3], Report: rep("down", nil, 1), Transition: true},
		Update{Record: recs[3], Report: rep("down", nil, 2)},
	)
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	ob, err := NewOutbox(db.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	marks := map[string]bool{"alert\x00hook\x00w_0000000000000002\x00expiry": true, "alert\x00hook\x00w_0000000000000004\x00down": true}
	if _, err := ob.EnqueueMarked(marks,
		OutboxEntry{Channel: "hook", Payload: []byte(`{"id":"d_1","kind":"stage_crossed"}`), CreatedAt: at},
		OutboxEntry{Channel: "hook", Payload: []byte(`{"id":"d_2","kind":"status_changed"}`), CreatedAt: at.Add(time.Minute)},
		OutboxEntry{Channel: "slack", Payload: []byte(`{"id":"d_3","kind":"status_changed"}`), CreatedAt: at.Add(time.Minute), NextAt: at.Add(time.Hour)},
	); err != nil {
		t.Fatal(err)
	}
	if err := ob.Reschedule(3, at.Add(2*time.Hour), 2, "503 Service Unavailable"); err != nil {
		t.Fatal(err)
	}
}
