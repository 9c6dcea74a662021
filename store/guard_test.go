package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeFixture writes a closed database of n watches, each with a few
// reports, an alert state and index entries, and returns its path.
func writeFixture(t testing.TB, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tlswatch.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ups []Update
	for i := range n {
		r := rec(fmt.Sprintf("w_%016x", i), fmt.Sprintf("host%02d.test", i))
		r.State, r.NotAfter, r.Fingerprint = "up", t0.Add(time.Duration(i)*24*time.Hour), fmt.Sprintf("fp%02d", i)
		ups = append(ups, Update{Record: r, Create: true})
		for j := range 4 {
			ups = append(ups, Update{Record: r, Report: report(t0.Add(time.Duration(j)*time.Minute), "ok"), Transition: j == 0})
		}
		ups = append(ups, Update{Record: r, Alert: &Alert{Fingerprint: r.Fingerprint, FirstSeen: t0, Stages: []string{}}})
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// damageCopy copies the file at src to a new path and writes garbage over
// page pg (4 KiB pages).
func damageCopy(t testing.TB, src string, pg int, garbage []byte) string {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	copy(raw[pg*4096:(pg+1)*4096], garbage)
	dst := filepath.Join(t.TempDir(), "tlswatch.db")
	if err := os.WriteFile(dst, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

func garbagePage(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// exercise calls every read and a write of the store on path and returns
// the errors met.
func exercise(path string) []error {
	db, err := Open(path, Options{Timeout: time.Second})
	if err != nil {
		return []error{err}
	}
	defer db.Close()
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	vs, err := db.List()
	keep(err)
	_, err = db.ForEach(func(Record) error { return nil })
	keep(err)
	_, err = db.ListPage("", 20)
	keep(err)
	_, err = db.ExpiringIDs(t0.Add(365 * 24 * time.Hour))
	keep(err)
	for i := range 50 {
		id := fmt.Sprintf("w_%016x", i)
		for _, res := range []Resolution{ResolutionRaw, ResolutionHour, ResolutionDay} {
			_, err = db.Query(id, HistoryQuery{Resolution: res})
			if !errors.Is(err, ErrNotFound) {
				keep(err)
			}
		}
	}
	if len(vs) > 0 {
		_, err = db.Apply([]Update{{Record: vs[0].Record, Report: report(t0.Add(time.Hour), "ok")}})
		keep(err)
	}
	return errs
}

// Garbage over each page of a 50-watch file in turn: every call of the
// store returns a *DamageError or works, never panics; whenever a call met
// damage, CheckFile finds it too, and a file CheckFile calls whole works.
func TestGarbageOverEachPage(t *testing.T) {
	src := writeFixture(t, 50)
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	pages := int(fi.Size() / 4096)
	// Pages past the data (bbolt grows the file ahead of it) hold nothing:
	// garbage there is not damage.
	inUse := pages
	if b, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second}); err == nil {
		b.View(func(tx *bolt.Tx) error { inUse = int(tx.Size() / 4096); return nil })
		b.Close()
	}
	damagedSeen := 0
	for pg := range pages {
		for _, g := range []struct {
			name string
			page []byte
		}{{"random", garbagePage(uint64(pg))}, {"ones", []byte(strings.Repeat("\xff", 4096))}} {
			t.Run(fmt.Sprintf("page%d/%s", pg, g.name), func(t *testing.T) {
				path := damageCopy(t, src, pg, g.page)
				rep, err := CheckFile(path, time.Second)
				if err != nil {
					t.Fatalf("CheckFile: %v", err)
				}
				errs := exercise(path)
				for _, err := range errs {
					var d *DamageError
					if !errors.As(err, &d) || !strings.Contains(err.Error(), path) {
						t.Errorf("error is not a DamageError naming the file: %v", err)
					}
				}
				if len(errs) > 0 && !rep.Damaged() {
					t.Errorf("calls met damage (%v) but CheckFile says %s", errs[0], rep.String())
				}
				if rep.Damaged() {
					damagedSeen++
				}
			})
		}
	}
	if damagedSeen < inUse {
		t.Errorf("only %d of %d damaged copies (%d pages in use) were found damaged", damagedSeen, 2*pages, inUse)
	}
}

// A file cut short at several sizes: one clear error (not a database, or
// damaged) that leaves the file as it was, or, when only unused space at its
// end was cut, a clean read, never a fault.
func TestTruncated(t *testing.T) {
	src := writeFixture(t, 50)
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 100, 4096, 8192, 3 * 4096, len(raw) / 2, len(raw) - 4096, len(raw) - 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tlswatch.db")
			if err := os.WriteFile(path, raw[:size], 0o600); err != nil {
				t.Fatal(err)
			}
			rep, checkErr := CheckFile(path, time.Second)
			db, err := Open(path, Options{})
			if err == nil {
				db.Close()
				if errs := exercise(path); len(errs) > 0 || checkErr != nil || rep.Damaged() {
					t.Errorf("opened, but calls fail (%v) or the check does not agree (%v, %s)", errs, checkErr, rep.String())
				}
				return
			}
			if !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrNotDatabase) {
				t.Errorf("Open: %v, want ErrDamaged or ErrNotDatabase", err)
			}
			if checkErr == nil && !rep.Damaged() {
				t.Errorf("Open fails (%v) but CheckFile calls the file whole", err)
			}
			if after, _ := os.ReadFile(path); len(after) != size {
				t.Errorf("the file changed size: %d -> %d", size, len(after))
			}
		})
	}
}

// Only a missing path becomes a new database; an empty file, another
// program's file or a directory is refused and left as it was.
func TestOpenRefusesWhatIsNotADatabase(t *testing.T) {
	foreign := func(path string) {
		b, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("sessions")); return err })
		b.Close()
	}
	for _, c := range []struct {
		name  string
		setup func(path string)
		want  string
	}{
		{"empty file", func(p string) { os.WriteFile(p, nil, 0o600) }, "empty (0 bytes)"},
		{"text", func(p string) { os.WriteFile(p, []byte("hello, world\n"), 0o600) }, "not a bbolt file"},
		{"page of zeros", func(p string) { os.WriteFile(p, make([]byte, 8192), 0o600) }, "not a bbolt file"},
		{"another program's bbolt", foreign, `buckets "sessions"`},
		{"directory", func(p string) { os.Mkdir(p, 0o700) }, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tlswatch.db")
			c.setup(path)
			before, _ := os.Stat(path)
			for _, ro := range []bool{false, true} {
				_, err := Open(path, Options{ReadOnly: ro})
				if !errors.Is(err, ErrNotDatabase) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
					t.Errorf("Open(ReadOnly=%v): %v; want ErrNotDatabase saying %q", ro, err, c.want)
				}
			}
			after, _ := os.Stat(path)
			if before.Size() != after.Size() || !before.ModTime().Equal(after.ModTime()) {
				t.Errorf("the file was touched: %d -> %d bytes", before.Size(), after.Size())
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "new.db")
		if _, err := Open(path, Options{ReadOnly: true}); err == nil {
			t.Error("read-only Open created a database")
		}
		db, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if v, err := db.Schema(); err != nil || v != SchemaVersion {
			t.Errorf("new database: schema %d, %v", v, err)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".new.db.new-*")); len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
}

// Damage met while the file is open: the call returns a DamageError,
// OnDamage hears of it once, later writes are refused without entering
// bbolt, and Close still returns.
func TestDamageWhileOpen(t *testing.T) {
	path := writeFixture(t, 50)
	var seen []*DamageError
	db, err := Open(path, Options{OnDamage: func(d *DamageError) { seen = append(seen, d) }})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for pg := 2; pg < len(raw)/4096; pg++ {
		f.WriteAt(garbagePage(uint64(pg)), int64(pg)*4096)
	}
	f.Close()
	_, err = db.List()
	var d *DamageError
	if !errors.As(err, &d) || !strings.HasPrefix(d.Op, "read (List") {
		t.Fatalf("List on a damaged file: %v (op %q)", err, opOf(d))
	}
	_, err = db.Apply([]Update{{Record: rec("w_new", "new.test"), Create: true}})
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("Apply after damage: %v", err)
	}
	if len(seen) != 1 || seen[0] != d {
		t.Errorf("OnDamage calls: %v", seen)
	}
	done := make(chan error, 1)
	go func() { done <- db.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a damaged file")
	}
}

func opOf(d *DamageError) string {
	if d == nil {
		return ""
	}
	return d.Op
}

func TestCheckFile(t *testing.T) {
	path := writeFixture(t, 50)
	rep, err := CheckFile(path, time.Second)
	if err != nil || rep.Damaged() || rep.Watches != 50 || rep.Schema != SchemaVersion || len(rep.Undecodable) != 0 {
		t.Fatalf("whole file: %+v, %v", rep, err)
	}
	// A record that does not decode: the file is whole, the record is named.
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bWatches).Put([]byte("w_0000000000000007"), []byte{recordCodecV1, 0xff})
	})
	b.Close()
	rep, err = CheckFile(path, time.Second)
	if err != nil || rep.Damaged() || rep.Watches != 49 || fmt.Sprint(rep.Undecodable) != "[w_0000000000000007]" {
		t.Errorf("undecodable record: %+v, %v", rep, err)
	}
	// Held for writing: the check cannot run and says so.
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := CheckFile(path, 50*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("CheckFile of a held file: %v", err)
	}
	if rep := db.Check(); rep.Damaged() || rep.Watches != 49 {
		t.Errorf("Check of the open file: %+v", rep)
	}
}

// A file cut short under an open handle: the read faults (SIGBUS on the
// mapping past the end of the file), and the fault becomes a DamageError
// of that call instead of killing the process.
func TestTruncatedWhileOpen(t *testing.T) {
	path := writeFixture(t, 50)
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := os.Truncate(path, 8192); err != nil {
		t.Fatal(err)
	}
	_, err = db.List()
	var d *DamageError
	if !errors.As(err, &d) || !strings.Contains(d.Detail, "fault") {
		t.Fatalf("List on a truncated file: %v", err)
	}
}
