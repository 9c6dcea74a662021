package store

import (
	"fmt"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func ids(views []View) []string {
	var out []string
	for _, v := range views {
		out = append(out, v.Record.ID)
	}
	return out
}

// TestMigrateSchema2Quarantine: a file the schema-2 code wrote, holding one
// record that does not decode, opens migrated to schema 3; the first load
// hands the three good records to the watcher, sets the bad one aside (out
// of the lists and indexes, its history kept) and says which; a second
// load finds nothing to set aside; db check lists it (and the watch that
// took its target again).
func TestMigrateSchema2Quarantine(t *testing.T) {
	path := copyFixture(t, "schema2-quarantine.db")
	if rep, err := CheckFile(path, time.Second); err != nil || len(rep.Undecodable) != 1 || rep.Undecodable[0] != "w_0000000000000003" {
		t.Fatalf("check of the schema-2 file: %+v %v", rep, err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.Schema(); err != nil || v != SchemaVersion || SchemaVersion != 4 {
		t.Fatalf("schema %d %v", v, err)
	}
	var loaded []string
	bad, err := db.ForEach(func(r Record) error { loaded = append(loaded, r.ID); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"w_0000000000000001", "w_0000000000000002", "w_0000000000000004"}; !slices.Equal(loaded, want) {
		t.Errorf("loaded %v, want %v", loaded, want)
	}
	if len(bad) != 1 || bad[0].ID != "w_0000000000000003" || bad[0].Reason == "" || len(bad[0].Record) == 0 {
		t.Fatalf("quarantined %+v", bad)
	}
	mcp, err := db.Get("w_0000000000000002")
	if err != nil || !mcp.Record.MCP || mcp.Record.CreatedBy != "alice" || mcp.Record.Probe == nil || mcp.Record.Probe.TokenName != "prod" ||
		mcp.Record.MCPInfo == nil || mcp.Record.MCPInfo.ToolCount != 3 || mcp.LastReport == nil {
		t.Errorf("a schema-2 watch with its configuration: %+v %v", mcp, err)
	}
	checkQuarantined(t, db)
	again, err := db.ForEach(func(Record) error { return nil })
	if err != nil || len(again) != 0 {
		t.Errorf("second load quarantined %+v %v", again, err)
	}
	if n, err := db.Outbox().Len(); err != nil || n != 1 {
		t.Errorf("outbox after migration: %d %v", n, err)
	}
	db.Close()
	rep, err := CheckFile(path, time.Second)
	if err != nil || rep.Damaged() || len(rep.Undecodable) != 0 || len(rep.Quarantined) != 1 || rep.Quarantined[0].ID != "w_0000000000000003" ||
		rep.Quarantined[0].At.IsZero() || rep.Watches != 4 {
		t.Errorf("check after the quarantine: %+v %v", rep, err)
	}
}

// checkQuarantined: the bad record is in no list or index; its history
// stays; its target can be watched again.
func checkQuarantined(t *testing.T, db *DB) {
	t.Helper()
	if all, err := db.List(); err != nil || len(all) != 3 {
		t.Errorf("List after the quarantine: %v %v", ids(all), err)
	}
	if _, err := db.Get("w_0000000000000003"); err == nil {
		t.Error("Get finds the quarantined record")
	}
	exp, err := db.ExpiringIDs(t0.AddDate(1, 0, 0))
	if err != nil || slices.Contains(exp, "w_0000000000000003") {
		t.Errorf("expiring ids after the quarantine: %v %v", exp, err)
	}
	if _, err := db.Lookup(Identity(rec("", "bad.example").Target, "")); err == nil {
		t.Error("the target index still names the quarantined record")
	}
	q, err := db.Quarantine()
	if err != nil || len(q) != 1 || q[0].ID != "w_0000000000000003" || len(q[0].Record) != 0 {
		t.Errorf("Quarantine: %+v %v", q, err)
	}
	var hist int
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bHistory).Cursor()
		for k, _ := c.Seek([]byte("w_0000000000000003/")); k != nil && string(k[:19]) == "w_0000000000000003/"; k, _ = c.Next() {
			hist++
		}
		return nil
	})
	if hist != 1 {
		t.Errorf("history of the quarantined record: %d entries, want 1 kept", hist)
	}
	again := rec("w_new", "bad.example")
	if _, err := db.Apply([]Update{{Record: again, Create: true}}); err != nil {
		t.Fatal(err)
	}
	if id, err := db.Lookup(again.Identity()); err != nil || id != "w_new" {
		t.Errorf("watching the target again: %q %v", id, err)
	}
}

// A read-only open reports a record that does not decode but leaves it.
func TestForEachReadOnlyKeeps(t *testing.T) {
	path := copyFixture(t, "schema2-quarantine.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close() // migrated, nothing loaded
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	bad, err := ro.ForEach(func(Record) error { return nil })
	if err != nil || len(bad) != 1 {
		t.Fatalf("read-only load: %+v %v", bad, err)
	}
	if q, err := ro.Quarantine(); err != nil || len(q) != 0 {
		t.Errorf("read-only load quarantined %+v %v", q, err)
	}
}

// ListPage walks the watches in id order, page by page, leaving out (and
// naming) a record that does not decode.
func TestListPage(t *testing.T) {
	db, _ := openTest(t)
	var ups []Update
	for i := range 7 {
		ups = append(ups, Update{Record: rec(fmt.Sprintf("w_%d", i), fmt.Sprintf("h%d.test", i)), Create: true, Report: report(t0, "ok")})
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	if err := db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(bWatches).Put([]byte("w_3"), []byte{0x7f}) }); err != nil {
		t.Fatal(err)
	}
	var got, undecodable []string
	after, pages := "", 0
	for {
		p, err := db.ListPage(after, 3)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, ids(p.Views)...)
		undecodable = append(undecodable, p.Undecodable...)
		for _, v := range p.Views {
			if v.LastReport == nil {
				t.Errorf("%s without its report", v.Record.ID)
			}
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if want := []string{"w_0", "w_1", "w_2", "w_4", "w_5", "w_6"}; !slices.Equal(got, want) || pages != 3 || !slices.Equal(undecodable, []string{"w_3"}) {
		t.Errorf("pages %d: %v (undecodable %v), want %v", pages, got, undecodable, want)
	}
	if p, err := db.ListPage("w_6", 3); err != nil || len(p.Views) != 0 || p.Next != "" {
		t.Errorf("after the last: %+v %v", p, err)
	}
	if p, err := db.ListPage("w_0x", 1); err != nil || len(p.Views) != 1 || p.Views[0].Record.ID != "w_1" || p.Next != "w_1" {
		t.Errorf("after an id that is gone: %+v %v", p, err)
	}
	if _, err := db.ListPage("", 0); err == nil {
		t.Error("a page of 0")
	}
}
