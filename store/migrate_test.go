package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

// fixtureNow is a clock for the fixtures' history (written on 2026-11-26):
// with the real clock it would pass its retention one day.
func fixtureNow() time.Time { return time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC) }

// copyFixture copies a file of testdata (schema1.db, written by the
// schema-1 code, see fixture_v1_test.go; schema2-days.db, see
// fixture_v2_test.go; schema2-mcp.db, see fixture_mcp_test.go) to a
// temporary file.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tlswatch.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMigrateSchema1: a file the schema-1 code wrote opens migrated to the
// current schema with every watch, its history, transitions and alert
// state, and every outbox entry and mark kept; the feed starts empty and
// works.
func TestMigrateSchema1(t *testing.T) {
	path := copyFixture(t, "schema1.db")
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrSchemaMismatch) {
		t.Fatalf("read-only open of a schema-1 file: %v, want ErrSchemaMismatch", err)
	}
	db, err := Open(path, Options{Now: fixtureNow})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.Schema(); err != nil || v != SchemaVersion {
		t.Fatalf("schema after migration %d, %v", v, err)
	}
	checkFixtureWatches(t, db)
	checkFixtureOutbox(t, db.Outbox())
	p, err := db.Feed(0, 10)
	if err != nil || len(p.Entries) != 0 {
		t.Fatalf("feed of a migrated file: %+v %v", p, err)
	}
	r, err := db.Get("w_0000000000000001")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Apply([]Update{{Record: r.Record, Feed: []FeedEntry{{Kind: "status_changed", WatchID: r.Record.ID}}}}); err != nil {
		t.Fatal(err)
	}
	if p, err := db.Feed(0, 10); err != nil || len(p.Entries) != 1 || p.Entries[0].Seq != 1 {
		t.Fatalf("feed after one event: %+v %v", p, err)
	}
}

func checkFixtureWatches(t *testing.T, db *DB) {
	t.Helper()
	views, err := db.List()
	if err != nil || len(views) != 4 {
		t.Fatalf("List: %d watches, %v; want 4", len(views), err)
	}
	byID := map[string]View{}
	for _, v := range views {
		byID[v.Record.ID] = v
	}
	pinned := byID["w_0000000000000002"].Record
	if pinned.Target.SNI != "sni.example" || pinned.Target.IP != "192.0.2.7" || pinned.TimeoutMS != 3000 ||
		pinned.Schedule != "0 */2 * * *" || fmt.Sprint(pinned.Thresholds) != "[21d 7d]" || pinned.FailureThreshold != 5 || pinned.FiredStage != "7d" {
		t.Errorf("pinned watch: %+v", pinned)
	}
	mail := byID["w_0000000000000003"].Record
	if mail.Scheme != "smtp" || mail.Path != "/x" || mail.ClientCert != "ops" || mail.State != "pending" || mail.Probe != nil {
		t.Errorf("STARTTLS watch: %+v", mail)
	}
	if v := byID["w_0000000000000004"]; v.Record.State != "down" || v.LastReport == nil || v.Record.ConsecutiveFailures != 4 {
		t.Errorf("down watch: %+v", v)
	}
	if p, err := db.Query("w_0000000000000001", HistoryQuery{}); err != nil || len(p.Samples) != 2 {
		t.Errorf("history: %d samples, %v", len(p.Samples), err)
	}
	if p, err := db.Query("w_0000000000000004", HistoryQuery{Resolution: ResolutionHour}); err != nil || len(p.Reports) != 1 || p.Reports[0].Kind != "change" {
		t.Errorf("transitions: %+v, %v", p.Reports, err)
	}
	for _, fp := range []string{"fp-pinned", "fp-old"} {
		if a, ok, err := db.Alert("w_0000000000000002", fp); err != nil || !ok || len(a.Stages) == 0 {
			t.Errorf("alert state of %s: %+v %v %v", fp, a, ok, err)
		}
	}
	ids, err := db.ExpiringIDs(time.Date(2026, 12, 26, 0, 0, 0, 0, time.UTC))
	if err != nil || len(ids) != 2 {
		t.Errorf("expiring ids: %v %v (want the pinned and the down watch)", ids, err)
	}
}

func checkFixtureOutbox(t *testing.T, ob *Outbox) {
	t.Helper()
	pend, err := ob.Pending(0)
	if err != nil || len(pend) != 3 {
		t.Fatalf("outbox: %d entries, %v; want 3", len(pend), err)
	}
	if pend[2].Channel != "slack" || pend[2].Attempts != 2 || pend[2].LastError != "503 Service Unavailable" {
		t.Errorf("rescheduled entry: %+v", pend[2])
	}
	marks, err := ob.Marked("alert\x00hook\x00w_0000000000000002\x00expiry", "alert\x00hook\x00w_0000000000000004\x00down")
	if err != nil || len(marks) != 2 {
		t.Errorf("marks: %v %v", marks, err)
	}
}

// A schema-1 file in which no outbox was ever used (its buckets were made
// on first use) gets them from the migration.
func TestMigrateSchema1WithoutOutbox(t *testing.T) {
	path := copyFixture(t, "schema1.db")
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bOutbox) }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	db, err := Open(path, Options{Now: fixtureNow})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkFixtureWatches(t, db)
	if n, err := db.Outbox().Len(); err != nil || n != 0 {
		t.Errorf("outbox: %d, %v", n, err)
	}
	r, _ := db.Get("w_0000000000000001")
	_, err = db.Apply([]Update{{Record: r.Record, InTx: func(tx OutboxTx) error {
		return tx.Enqueue(map[string]bool{"m": true}, OutboxEntry{Channel: "hook", Payload: []byte("x"), CreatedAt: t0})
	}}})
	if n, _ := db.Outbox().Len(); err != nil || n != 1 {
		t.Errorf("enqueue after migration: %d entries, %v", n, err)
	}
}

// The feed: sequences increase across transactions and reopen, entries
// commit with their update (not when it is dropped), the newest FeedKeep
// are kept, and a cursor pages through them.
func TestFeed(t *testing.T) {
	db, path := openTest(t)
	r := rec("w_1", "a.test")
	ev := func(kind string) []FeedEntry { return []FeedEntry{{Kind: kind, WatchID: "w_1", Time: t0}} }
	// An update of a missing watch is dropped, and its feed entries too.
	if _, err := db.Apply([]Update{{Record: r, Feed: ev("status_changed")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Apply([]Update{{Record: r, Create: true, Feed: ev("watch_added")}}); err != nil {
		t.Fatal(err)
	}
	// A failing commit hook rolls the entries back.
	if _, err := db.Apply([]Update{{Record: r, Feed: ev("rotated"), InTx: func(OutboxTx) error { return errors.New("no") }}}); err == nil {
		t.Fatal("Apply ignored the hook's error")
	}
	p, err := db.Feed(0, 10)
	if err != nil || len(p.Entries) != 1 || p.Entries[0].Kind != "watch_added" || p.Entries[0].Seq != 1 {
		t.Fatalf("feed: %+v %v", p, err)
	}
	db.Close()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ups []Update
	for i := 0; i < FeedKeep+5; i++ {
		ups = append(ups, Update{Record: r, Feed: ev("status_changed")})
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Delete("w_1", FeedEntry{Kind: "watch_removed", WatchID: "w_1"}); err != nil {
		t.Fatal(err)
	}
	last := uint64(FeedKeep + 7)
	p, err = db.Feed(last-3, 10)
	if err != nil || len(p.Entries) != 3 || p.Last != last || p.Oldest != last-FeedKeep+1 || p.Entries[2].Kind != "watch_removed" {
		t.Fatalf("feed tail: %d entries, oldest %d, last %d, %v", len(p.Entries), p.Oldest, p.Last, err)
	}
	if p, _ := db.Feed(0, 2); p.Entries[0].Seq != last-FeedKeep+1 {
		t.Errorf("feed from the start begins at %d, want %d", p.Entries[0].Seq, last-FeedKeep+1)
	}
	var n int
	err = db.bolt.View(func(tx *bolt.Tx) error { n = tx.Bucket(bFeed).Stats().KeyN; return nil })
	if err != nil || n != FeedKeep {
		t.Errorf("feed holds %d entries, want %d", n, FeedKeep)
	}
}

// TestThresholdsFromDaysOnlyFile opens testdata/schema2-days.db, written by
// the code before hour and percent thresholds (see fixture_v2_test.go):
// every threshold reads as whole days, the fired stage by name, the probe
// configuration intact; a record written back carries the new thresholds
// group and keeps the rest.
func TestThresholdsFromDaysOnlyFile(t *testing.T) {
	db, err := Open(copyFixture(t, "schema2-days.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	get := func(id string) Record {
		t.Helper()
		v, err := db.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		return v.Record
	}
	for _, c := range []struct{ id, thresholds, fired string }{
		{"w_00000000000000a1", "[30d 14d 7d 1d]", ""},
		{"w_00000000000000a2", "[45d 7d]", "7d"},
		{"w_00000000000000a3", "[21d]", ""},
	} {
		r := get(c.id)
		if fmt.Sprint(r.Thresholds) != c.thresholds || r.FiredStage != c.fired || r.RenewalCycle != 0 {
			t.Errorf("%s: thresholds %v fired %q cycle %v; want %s %q", c.id, r.Thresholds, r.FiredStage, r.RenewalCycle, c.thresholds, c.fired)
		}
	}
	for fp, want := range map[string]string{"fp-a2": "7d", "fp-old": "expired"} {
		if a, ok, err := db.Alert("w_00000000000000a2", fp); err != nil || !ok || a.Fired() != want {
			t.Errorf("alert %s: %+v %v %v, want fired %q", fp, a, ok, err, want)
		}
	}
	r := get("w_00000000000000a3")
	r.Thresholds = []probe.Threshold{probe.Days(21), probe.Hours(36), probe.Percent(20)}
	r.FiredStage, r.RenewalCycle = "36h", 9*24*time.Hour
	if _, err := db.Apply([]Update{{Record: r}}); err != nil {
		t.Fatal(err)
	}
	got := get("w_00000000000000a3")
	if fmt.Sprint(got.Thresholds) != "[21d 36h 20%]" || got.FiredStage != "36h" || got.RenewalCycle != 9*24*time.Hour ||
		got.Probe == nil || len(got.Probe.Roots) != 2 || !got.Probe.Policy.DenyPrivate || got.Probe.TokenName != "prod" ||
		got.MCPInfo == nil || got.MCPInfo.ToolCount != 3 || got.CreatedBy != "alice" {
		t.Errorf("written back: %+v probe %+v", got, got.Probe)
	}
}
