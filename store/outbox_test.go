package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openOutboxDB(t testing.TB, path string) (*DB, testOutbox) {
	t.Helper()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db, testOutbox{db.Outbox(), db}
}

// testOutbox enqueues in a transaction of its own, through the code of
// OutboxTx.Enqueue, so that the queue can be tested without watches.
type testOutbox struct {
	*Outbox
	db *DB
}

func (o testOutbox) Enqueue(entries ...OutboxEntry) ([]uint64, error) {
	return o.EnqueueMarked(nil, entries...)
}

func (o testOutbox) EnqueueMarked(marks map[string]bool, entries ...OutboxEntry) ([]uint64, error) {
	var ids []uint64
	err := o.db.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		ids, err = enqueue(tx, marks, entries)
		return err
	})
	return ids, err
}

var outboxT0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func entry(ch, payload string) OutboxEntry {
	return OutboxEntry{Channel: ch, Payload: []byte(payload), CreatedAt: outboxT0}
}

func dueIDs(t *testing.T, ob testOutbox, now time.Time, limit int) []uint64 {
	t.Helper()
	due, err := ob.Due(now, limit)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, e := range due {
		ids = append(ids, e.ID)
	}
	return ids
}

func equalIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOutboxEnqueueDueDeliver(t *testing.T) {
	db, ob := openOutboxDB(t, filepath.Join(t.TempDir(), "t.db"))
	defer db.Close()

	ids, err := ob.Enqueue(entry("a", "one"), entry("b", "two"), entry("a", "three"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Fatalf("ids = %v, want 3 increasing", ids)
	}
	due, err := ob.Due(outboxT0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 3 {
		t.Fatalf("due = %d entries, want 3", len(due))
	}
	e := due[0]
	if e.ID != ids[0] || e.Channel != "a" || string(e.Payload) != "one" || !e.CreatedAt.Equal(outboxT0) ||
		!e.NextAt.Equal(outboxT0) || e.Attempts != 0 || e.LastError != "" {
		t.Fatalf("first entry = %+v", e)
	}
	if got := dueIDs(t, ob, outboxT0, 2); !equalIDs(got, ids[:2]) {
		t.Fatalf("Due with limit 2 = %v, want %v", got, ids[:2])
	}
	if got := dueIDs(t, ob, outboxT0.Add(-time.Second), 0); len(got) != 0 {
		t.Fatalf("Due before CreatedAt = %v, want none", got)
	}

	if err := ob.MarkDelivered(ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := ob.MarkDelivered(ids[1]); err != nil {
		t.Fatalf("MarkDelivered twice: %v", err)
	}
	if err := ob.Drop(ids[0]); err != nil {
		t.Fatal(err)
	}
	if n, _ := ob.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
	if err := ob.Reschedule(ids[0], outboxT0, 1, "x"); !errors.Is(err, ErrOutboxEntryNotFound) {
		t.Fatalf("Reschedule of a dropped entry: %v, want ErrOutboxEntryNotFound", err)
	}
}

// A channel is FIFO: while its oldest entry backs off, its later entries are
// not due; other channels are unaffected; NextDue follows the heads.
func TestOutboxChannelFIFO(t *testing.T) {
	db, ob := openOutboxDB(t, filepath.Join(t.TempDir(), "t.db"))
	defer db.Close()

	ids, err := ob.Enqueue(entry("a", "trigger"), entry("b", "x"), entry("a", "resolve"))
	if err != nil {
		t.Fatal(err)
	}
	retryAt := outboxT0.Add(2 * time.Second)
	if err := ob.Reschedule(ids[0], retryAt, 1, "HTTP 503"); err != nil {
		t.Fatal(err)
	}
	if got := dueIDs(t, ob, outboxT0.Add(time.Second), 0); !equalIDs(got, []uint64{ids[1]}) {
		t.Fatalf("due while a backs off = %v, want only b's %d", got, ids[1])
	}
	if err := ob.MarkDelivered(ids[1]); err != nil {
		t.Fatal(err)
	}
	next, ok, err := ob.NextDue()
	if err != nil || !ok || !next.Equal(retryAt) {
		t.Fatalf("NextDue = %v %v %v, want %v (the head of a, not its due tail)", next, ok, err, retryAt)
	}
	due, err := ob.Due(retryAt, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].ID != ids[0] || due[1].ID != ids[2] {
		t.Fatalf("due at retry time = %+v, want a's entries in order", due)
	}
	if due[0].Attempts != 1 || due[0].LastError != "HTTP 503" || !due[0].NextAt.Equal(retryAt) {
		t.Fatalf("rescheduled entry = %+v", due[0])
	}
	for _, e := range due {
		if err := ob.MarkDelivered(e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := ob.NextDue(); ok {
		t.Fatal("NextDue on an empty outbox reports something")
	}
}

// Entries and marks are durable across close and reopen; ids keep growing;
// payload bytes are copies that outlive the transaction.
func TestOutboxSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	db, ob := openOutboxDB(t, path)
	ids, err := ob.EnqueueMarked(map[string]bool{"m1": true, "m2": true}, entry("a", "keep"), entry("a", "done"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ob.EnqueueMarked(map[string]bool{"m2": false}); err != nil {
		t.Fatal(err)
	}
	if err := ob.MarkDelivered(ids[1]); err != nil {
		t.Fatal(err)
	}
	pending, err := ob.Pending(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The payload must not point into the closed file's memory map.
	if len(pending) != 1 || string(pending[0].Payload) != "keep" {
		t.Fatalf("pending before reopen = %+v", pending)
	}

	db, ob = openOutboxDB(t, path)
	defer db.Close()
	pending, err = ob.Pending(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].ID != ids[0] || string(pending[0].Payload) != "keep" {
		t.Fatalf("pending after reopen = %+v, want only %d", pending, ids[0])
	}
	m, err := ob.Marked("m1", "m2", "m3")
	if err != nil {
		t.Fatal(err)
	}
	if !m["m1"] || m["m2"] || m["m3"] {
		t.Fatalf("marks after reopen = %v, want only m1", m)
	}
	more, err := ob.Enqueue(entry("a", "later"))
	if err != nil {
		t.Fatal(err)
	}
	if more[0] <= ids[1] {
		t.Fatalf("id after reopen %d reuses an old id (last %d)", more[0], ids[1])
	}
}

// Enqueue is all or nothing.
func TestOutboxEnqueueAtomic(t *testing.T) {
	db, ob := openOutboxDB(t, filepath.Join(t.TempDir(), "t.db"))
	defer db.Close()
	if _, err := ob.Enqueue(entry("a", "ok"), OutboxEntry{Payload: []byte("no channel")}); err == nil {
		t.Fatal("Enqueue accepted an entry without a channel")
	}
	if n, _ := ob.Len(); n != 0 {
		t.Fatalf("Len = %d after a failed Enqueue, want 0", n)
	}
}

// A corrupt value is handed out for dropping instead of wedging the queue.
func TestOutboxCorruptEntry(t *testing.T) {
	db, ob := openOutboxDB(t, filepath.Join(t.TempDir(), "t.db"))
	defer db.Close()
	ids, err := ob.Enqueue(entry("a", "x"), entry("a", "y"))
	if err != nil {
		t.Fatal(err)
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bOutbox).Bucket(bOutboxEntries).Put(outboxKey(ids[0]), []byte{9, 9})
	})
	if err != nil {
		t.Fatal(err)
	}
	due, err := ob.Due(outboxT0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].ID != ids[0] || due[0].Channel != "" || due[1].ID != ids[1] {
		t.Fatalf("due = %+v, want the corrupt entry (no channel) then the good one", due)
	}
	if _, ok, err := ob.NextDue(); !ok || err != nil {
		t.Fatalf("NextDue = %v %v", ok, err)
	}
}

func TestOutboxEntryEncodingRoundTrip(t *testing.T) {
	e := OutboxEntry{ID: 7, Channel: "mail", Payload: []byte(`{"a":1}`), CreatedAt: outboxT0,
		NextAt: outboxT0.Add(time.Minute), Attempts: 3, LastError: "smtp: 451"}
	got, err := decodeOutboxEntry(outboxKey(7), encodeOutboxEntry(e))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Channel != e.Channel || string(got.Payload) != string(e.Payload) ||
		!got.CreatedAt.Equal(e.CreatedAt) || !got.NextAt.Equal(e.NextAt) || got.Attempts != e.Attempts || got.LastError != e.LastError {
		t.Fatalf("round trip: got %+v, want %+v", got, e)
	}
	for n := 0; n < len(encodeOutboxEntry(e)); n++ {
		if _, err := decodeOutboxEntry(outboxKey(7), encodeOutboxEntry(e)[:n]); err == nil && n < outboxFixedLen+len(e.Channel)+2+len(e.LastError) {
			t.Fatalf("truncated entry of %d bytes decoded without error", n)
		}
	}
}

// FuzzOutboxEntryDecode: whatever bytes a damaged file holds, decoding
// returns an error or an entry, never a panic.
func FuzzOutboxEntryDecode(f *testing.F) {
	f.Add(encodeOutboxEntry(OutboxEntry{Channel: "a", Payload: []byte("{}"), CreatedAt: outboxT0, LastError: "x"}))
	f.Add([]byte{outboxEntryVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := decodeOutboxEntry(outboxKey(1), v)
		if err != nil {
			return
		}
		if _, herr := decodeOutboxHeader(v); herr != nil {
			t.Fatalf("entry decodes but header does not: %v", herr)
		}
		if got, _ := decodeOutboxEntry(outboxKey(1), encodeOutboxEntry(e)); got.Channel != e.Channel || string(got.Payload) != string(e.Payload) {
			t.Fatalf("re-encoding changed the entry: %+v vs %+v", got, e)
		}
	})
}

// BenchmarkOutboxDueBacklog: a receiver down for hours leaves a long backlog
// behind its head; each pass still has to find the other channels' work.
func BenchmarkOutboxDueBacklog(b *testing.B) {
	db, ob := openOutboxDB(b, filepath.Join(b.TempDir(), "b.db"))
	defer db.Close()
	payload := make([]byte, 800)
	var batch []OutboxEntry
	for i := 0; i < 10000; i++ {
		batch = append(batch, OutboxEntry{Channel: "down", Payload: payload, CreatedAt: outboxT0})
	}
	ids, err := ob.Enqueue(batch...)
	if err != nil {
		b.Fatal(err)
	}
	if err := ob.Reschedule(ids[0], outboxT0.Add(time.Hour), 5, "503"); err != nil {
		b.Fatal(err)
	}
	if _, err := ob.Enqueue(OutboxEntry{Channel: "up", Payload: payload, CreatedAt: outboxT0}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		due, err := ob.Due(outboxT0, 100)
		if err != nil || len(due) != 1 {
			b.Fatalf("due = %d, %v", len(due), err)
		}
	}
}
