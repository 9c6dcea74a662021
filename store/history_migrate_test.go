package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

// fixtureT0 is when testdata/genschema1 starts its history.
var fixtureT0 = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)

// fixtureCopy copies a database of testdata (gunzipped when its name ends
// in .gz) into a temporary file.
func fixtureCopy(t testing.TB, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "tlswatch.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// snapshot is every key and value of the file, per top-level bucket
// (nested buckets flattened with their path).
func snapshot(t testing.TB, path string) map[string]map[string]string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]map[string]string{}
	var walk func(name string, b *bolt.Bucket)
	walk = func(name string, b *bolt.Bucket) {
		m := map[string]string{}
		out[name] = m
		b.ForEach(func(k, v []byte) error {
			if v == nil {
				walk(name+"/"+string(k), b.Bucket(k))
				return nil
			}
			m[string(k)] = string(v)
			return nil
		})
	}
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { walk(string(name), b); return nil })
	})
	return out
}

type oldReport struct {
	at         int64 // ns, as keyed
	raw        string
	transition bool
}

// oldHistory is each watch's schema-1 history and transitions.
func oldHistory(snap map[string]map[string]string) map[string][]oldReport {
	out := map[string][]oldReport{}
	for _, name := range []string{"history", "transitions"} {
		for k, v := range snap[name] {
			id := k[:len(k)-9]
			at := int64(binary.BigEndian.Uint64([]byte(k[len(k)-8:])))
			out[id] = append(out[id], oldReport{at, v, name == "transitions"})
		}
	}
	for id, rs := range out {
		slices.SortFunc(rs, func(a, b oldReport) int { return int(a.at - b.at) })
		merged := rs[:0]
		for _, r := range rs {
			if n := len(merged); n > 0 && merged[n-1].at == r.at {
				merged[n-1].transition = merged[n-1].transition || r.transition
				continue
			}
			merged = append(merged, r)
		}
		out[id] = merged
	}
	return out
}

func openFixture(t testing.TB, path string) *DB {
	t.Helper()
	now := fixtureT0.Add(100 * 24 * time.Hour) // after every fixture's history
	db, err := Open(path, Options{Retention: Retention{Raw: 400 * day}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Files written by earlier code (schema 1, with testdata/genschema1 and
// fixture_v1_test.go; schema 2, with fixture_v2_test.go and
// fixture_quarantine_test.go; schema 3, with fixture_v3_test.go) open,
// convert in bounded batches and keep every watch, alert state, index,
// outbox entry and mark, feed entry and quarantined record byte for byte,
// every probe as a sample and every transition as a stored change.
func TestMigrateHistory(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		watches int
		history bool
	}{{"schema1.db.gz", 5, true}, {"schema1.db", 4, true}, {"schema2-days.db", 3, false}, {"schema2-mcp.db", 1, true}, {"schema3.db", 3, true}} {
		t.Run(tc.fixture, func(t *testing.T) {
			path := fixtureCopy(t, tc.fixture)
			before := snapshot(t, path)
			if len(before["watches"]) != tc.watches || (len(before["history"]) > 0) != tc.history {
				t.Fatalf("fixture: %d watches, %d history entries", len(before["watches"]), len(before["history"]))
			}
			migrateAndCheck(t, path, before)
		})
	}
	// The richest fixture: 500 history entries (the cap) and a transition
	// older than them, alert state of three certificates, pending outbox.
	before := snapshot(t, fixtureCopy(t, "schema1.db.gz"))
	if old := oldHistory(before); len(old["w_a"]) != 500+1 || len(before["alerts"]) != 3 || len(before["outbox/entries"]) != 2 {
		t.Errorf("schema1.db.gz is not what genschema1 writes: %d w_a reports, %d alerts, %d outbox entries",
			len(old["w_a"]), len(before["alerts"]), len(before["outbox/entries"]))
	}
}

func migrateAndCheck(t *testing.T, path string, before map[string]map[string]string) {
	old := oldHistory(before)
	db := openFixture(t, path)
	// Before conversion, list_watches still shows each last Report.
	for id, rs := range old {
		if _, ok := before["quarantine"][id]; ok {
			continue // not a watch; its history is converted all the same
		}
		if v, err := db.Get(id); err != nil || v.LastReport == nil || jsonOf(t, v.LastReport) != jsonOf(t, decodeReport(t, rs[len(rs)-1].raw)) {
			t.Fatalf("unconverted watch %s: last Report %v, %v", id, v.LastReport, err)
		}
	}
	if left, err := db.ConvertHistory(context.Background(), 100); err != nil || left {
		t.Fatalf("ConvertHistory: left=%v, %v", left, err)
	}
	if sv, _ := db.Schema(); sv != SchemaVersion {
		t.Errorf("schema %d, want %d", sv, SchemaVersion)
	}
	db.Close()
	after := snapshot(t, path)
	for _, name := range []string{"history", "transitions"} {
		if _, ok := after[name]; ok {
			t.Errorf("bucket %s left after conversion", name)
		}
	}
	if _, ok := after["meta"][string(kConverting)]; ok {
		t.Error("conversion still marked pending")
	}
	for _, name := range []string{"watches", "targets", "expiry", "down", "alerts", "outbox/entries", "outbox/marks", "feed", "quarantine"} {
		if !mapsEqual(before[name], after[name]) {
			t.Errorf("bucket %s changed by the migration", name)
		}
	}
	db = openFixture(t, path)
	for id := range before["watches"] {
		t.Run(id, func(t *testing.T) { checkConverted(t, db, id, old[id]) })
	}
	for id := range before["quarantine"] {
		db.bolt.View(func(tx *bolt.Tx) error {
			if _, hd, err := openHead(tx, id); err != nil || (hd == nil) != (len(old[id]) == 0) {
				t.Errorf("quarantined %s: history head %v (%d old entries), %v", id, hd, len(old[id]), err)
			}
			return nil
		})
	}
}

func decodeReport(t testing.TB, raw string) *probe.Report {
	t.Helper()
	var rep probe.Report
	if err := json.Unmarshal([]byte(raw), &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkConverted: one sample per old Report (time to the ms, status), each
// old transition stored as a change equal to it, the newest Report kept.
func checkConverted(t *testing.T, db *DB, id string, old []oldReport) {
	page, err := db.Query(id, HistoryQuery{MaxReports: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Samples) != len(old) {
		t.Fatalf("%d samples for %d old Reports", len(page.Samples), len(old))
	}
	changes := map[int64]string{}
	for _, sr := range page.Reports {
		if sr.Kind == "change" {
			changes[sr.At.UnixNano()] = jsonOf(t, sr.Report)
		}
	}
	for i, o := range old {
		s := page.Samples[len(old)-1-i]
		var rep probe.Report
		if err := json.Unmarshal([]byte(o.raw), &rep); err != nil {
			t.Fatal(err)
		}
		if s.At.UnixMilli() != time.Unix(0, o.at).UnixMilli() || s.Status != rep.Status || s.HandshakeMS != rep.Timing.Handshake {
			t.Fatalf("sample %d = %+v, old Report at %v status %s", i, s, time.Unix(0, o.at).UTC(), rep.Status)
		}
		if o.transition {
			if got, ok := changes[o.at]; !ok || got != jsonOf(t, rep) {
				t.Errorf("transition at %v not kept as a change (or differs)", time.Unix(0, o.at).UTC())
			}
		}
	}
	v, err := db.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(old) == 0 {
		if v.LastReport != nil {
			t.Error("a watch never probed has a last Report")
		}
		return
	}
	var newest probe.Report
	json.Unmarshal([]byte(old[len(old)-1].raw), &newest)
	if v.LastReport == nil || jsonOf(t, v.LastReport) != jsonOf(t, &newest) {
		t.Error("last Report differs from the newest old one")
	}
}

// A crash between batches loses and repeats nothing: converting in two
// runs with a reopen between gives what one run gives.
func TestMigrateResumesAfterCrash(t *testing.T) {
	one := openFixture(t, fixtureCopy(t, "schema1.db.gz"))
	if _, err := one.ConvertHistory(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	path := fixtureCopy(t, "schema1.db.gz")
	two := openFixture(t, path)
	if err := two.bolt.Update(func(tx *bolt.Tx) error { _, err := convertBatch(tx, 300); return err }); err != nil {
		t.Fatal(err)
	}
	two.Close() // as if killed after the first batch committed
	if _, ok := snapshot(t, path)["meta"][string(kConverting)]; !ok {
		t.Fatal("pending conversion not recorded in meta")
	}
	two = openFixture(t, path)
	if _, err := two.ConvertHistory(context.Background(), 50); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"w_a", "w_b", "w_c", "w_d", "w_e"} {
		q := HistoryQuery{MaxReports: 1 << 20}
		a, err1 := one.Query(id, q)
		b, err2 := two.Query(id, q)
		if err1 != nil || err2 != nil || jsonOf(t, a) != jsonOf(t, b) {
			t.Errorf("%s: resumed conversion differs (%v, %v)", id, err1, err2)
		}
	}
}

// A watch written or read before its turn is converted first, so its
// history stays in time order.
func TestMigrateWatchOnFirstUse(t *testing.T) {
	path := fixtureCopy(t, "schema1.db.gz")
	old := oldHistory(snapshot(t, path))
	db := openFixture(t, path)
	at := fixtureT0.Add(40 * 24 * time.Hour)
	rep := fullReport(at, "ok", "fpNew", at.Add(80*24*time.Hour), 3)
	r := rec("w_e", "e.example")
	r.Schedule = "@every 1m"
	if _, err := db.Apply([]Update{{Record: r, Report: rep}}); err != nil {
		t.Fatal(err)
	}
	page, err := db.Query("w_e", HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Samples) != len(old["w_e"])+1 || !page.Samples[0].At.Equal(at) {
		t.Fatalf("%d samples, newest %v; want %d, newest %v", len(page.Samples), page.Samples[0].At, len(old["w_e"])+1, at)
	}
	for i := 1; i < len(page.Samples); i++ {
		if page.Samples[i].At.After(page.Samples[i-1].At) {
			t.Fatal("samples out of order")
		}
	}
	// Read first: converted by the read.
	if p, err := db.Query("w_a", HistoryQuery{Limit: 3}); err != nil || len(p.Samples) != 3 {
		t.Fatalf("history of an unconverted watch: %d samples, %v", len(p.Samples), err)
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bHistory).Cursor()
		if k, _ := c.Seek([]byte("w_a/")); k != nil && bytes.HasPrefix(k, []byte("w_a/")) {
			t.Error("w_a read but not converted")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
