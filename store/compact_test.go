package store

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// Compaction gives the pruned space back and keeps every answer.
func TestCompactFileGivesSpaceBack(t *testing.T) {
	db, clk := openHistDB(t, Retention{Raw: 2 * day, Hour: 3 * day, Day: 3 * day, Changes: 3 * day})
	db.bolt.NoSync = true
	clk.t = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSim(t, db, clk, 30, 10*time.Minute)
	s.run(clk.t.Add(20*day), day, nil)
	if _, err := db.Prune(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	id := s.watches[7].rec.ID
	before, err := db.Query(id, HistoryQuery{Resolution: ResolutionHour})
	if err != nil {
		t.Fatal(err)
	}
	path := db.Path()
	db.Close()
	res, err := CompactFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted %d -> %d bytes", res.Before, res.After)
	if res.After*2 > res.Before {
		t.Errorf("compaction gave back too little: %d -> %d bytes", res.Before, res.After)
	}
	db2, err := Open(path, Options{Retention: db.conf, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	after, err := db2.Query(id, HistoryQuery{Resolution: ResolutionHour})
	if err != nil || jsonOf(t, after) != jsonOf(t, before) {
		t.Errorf("history differs after compaction (%v)", err)
	}
	if all, err := db2.List(); err != nil || len(all) != 30 {
		t.Errorf("watches after compaction: %d, %v", len(all), err)
	}
}

// Only the process holding the file compacts it; a process that waited for
// the lock on the old file while it was swapped ends up on the new one.
func TestCompactSwapWithWaitingOpener(t *testing.T) {
	db, _ := openHistDB(t, Retention{})
	path := db.Path()
	addWatch(t, db, "w_1")
	if _, err := CompactFile(path, 50*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("CompactFile of a file in use: %v, want ErrLocked", err)
	}
	opened := make(chan *DB, 1)
	go func() {
		o, err := Open(path, Options{Timeout: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		opened <- o
	}()
	// Let it open the old file and wait for its lock. Should it be slower
	// than that, it opens the new file directly and the test proves less,
	// but does not fail.
	time.Sleep(200 * time.Millisecond)
	if _, err := compactOpen(db.bolt.DB, path, time.Second); err != nil {
		t.Fatal(err)
	}
	db.Close() // releases the old file's lock: the waiting opener gets it
	waiter := <-opened
	if waiter == nil {
		t.FailNow()
	}
	addWatch(t, waiter, "w_2") // written where?
	waiter.Close()
	check, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	if _, err := check.Get("w_2"); err != nil {
		t.Fatalf("a write of the process that waited is not in the file at the path: %v", err)
	}
}

func TestUsage(t *testing.T) {
	db, clk := openHistDB(t, Retention{})
	addWatch(t, db, "w_1")
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Hour)
		st := probe.Status("ok")
		if i == 20 {
			st = "warning"
		}
		record(t, db, "w_1", fullReport(at, st, "fpA", t0.Add(90*day), 5))
	}
	clk.t = t0.Add(31 * time.Hour)
	u, err := db.Usage()
	if err != nil {
		t.Fatal(err)
	}
	// Changes: first, warning, back to ok; checkpoint: the next UTC day.
	if u.Watches != 1 || u.Samples != 30 || u.Changes != 3 || u.Checkpoints != 1 || u.HourAggregates != 30 || u.Schema != SchemaVersion {
		t.Errorf("usage %+v", u)
	}
	if !u.OldestSample.Equal(t0) || !u.NewestSample.Equal(t0.Add(29*time.Hour)) {
		t.Errorf("sample range %v..%v", u.OldestSample, u.NewestSample)
	}
	if s := u.String(); !strings.Contains(s, "30 samples") || !strings.Contains(s, "hist_samples") {
		t.Errorf("text:\n%s", s)
	}
}

// The owner compacts online: writes and reads go on around the swap (they
// wait for it), every acknowledged write is in the new file, and the new
// file is what the path names.
func TestCompactOnline(t *testing.T) {
	db, clk := openHistDB(t, Retention{Raw: 2 * day, Hour: 3 * day, Day: 3 * day, Changes: 3 * day})
	clk.t = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSim(t, db, clk, 30, 10*time.Minute)
	s.run(clk.t.Add(10*day), day, nil)
	if _, err := db.Prune(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	path := db.Path()
	before, _ := os.Stat(path)
	w := s.watches[0]
	stop := make(chan struct{})
	acked := make(chan int, 1)
	go func() { // a writer that never stops for the compaction
		n := 0
		defer func() { acked <- n }()
		for at := clk.t; ; at = at.Add(time.Second) {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.Apply([]Update{{Record: w.rec, Report: s.report(w, at)}}); err != nil {
				t.Error(err)
				return
			}
			n++
		}
	}()
	time.Sleep(50 * time.Millisecond)
	probesBefore := probesOfWatch(t, db, w.rec.ID)
	res, err := db.Compact()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	n := <-acked
	if got := probesOfWatch(t, db, w.rec.ID); got < probesBefore || n == 0 {
		t.Fatalf("probes recorded: %d before the compaction, %d after, %d acknowledged", probesBefore, got, n)
	}
	want := probesOfWatch(t, db, w.rec.ID)
	after, _ := os.Stat(path)
	if os.SameFile(before, after) || res.After >= res.Before {
		t.Errorf("the path still names the old file (%v) or nothing was given back: %+v", os.SameFile(before, after), res)
	}
	db.Close()
	re, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if got := probesOfWatch(t, re, w.rec.ID); got != want {
		t.Errorf("after reopening: %d probes recorded, want %d", got, want)
	}
}

func probesOfWatch(t *testing.T, db *DB, id string) int {
	t.Helper()
	v, err := db.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return v.Record.HistoryCount
}
