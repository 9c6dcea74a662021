package watch

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/store"
)

// TestCommitHookDurableWithState: what the owner's commit hook writes for
// an event (an alert outbox entry) is committed in the transaction that
// records the event's state, so it is on disk when watch_endpoint answers;
// a hook that fails rolls the write back and Add reports it.
func TestCommitHookDurableWithState(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 5*24*time.Hour))
	cfg := testConfig(dbPath(t), realProbe(p, nil))
	var (
		mu   sync.Mutex
		db   *store.DB
		fail bool
	)
	cfg.OnOwnerStart = func(d *store.DB) CommitHook {
		mu.Lock()
		db = d
		mu.Unlock()
		return func(tx *store.Tx, ev Event) error {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				return errors.New("hook refuses")
			}
			return store.EnqueueMarkedTx(tx, map[string]bool{"seen/" + ev.Watch.ID: true},
				store.OutboxEntry{Channel: "test", Payload: []byte(ev.Kind), CreatedAt: time.Now()})
		}
	}
	m := openManager(t, cfg)
	w, err := m.Add(ctxT(t), Spec{Target: srv.target(5 * time.Second), Schedule: "@every 1h"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	ob, err := store.NewOutbox(db.Bolt())
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// No waiting: Add returned, so the entries are committed.
	pend, err := ob.Pending(0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range pend {
		kinds[string(e.Payload)]++
	}
	if kinds[EventStageCrossed] != 1 || kinds[EventStatusChanged] != 1 || len(pend) != 2 {
		t.Errorf("outbox after Add: %v, want one stage_crossed and one status_changed", kinds)
	}
	if mk, err := ob.Marked("seen/" + w.ID); err != nil || !mk["seen/"+w.ID] {
		t.Errorf("mark written by the hook: %v %v", mk, err)
	}

	// A failing hook fails the commit: nothing of it is acknowledged.
	mu.Lock()
	fail = true
	mu.Unlock()
	other := serveLab(t, leafIn(p, 5*24*time.Hour))
	if _, err := m.Add(ctxT(t), Spec{Target: other.target(5 * time.Second), Schedule: "@every 1h"}); err == nil {
		t.Fatal("Add succeeded although the commit hook failed")
	}
	ws, err := m.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].ID != w.ID {
		t.Errorf("watches after a failed commit: %+v", ws)
	}
	if n, _ := ob.Len(); n != 2 {
		t.Errorf("outbox grew to %d entries in a rolled-back commit", n)
	}
}
