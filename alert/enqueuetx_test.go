package alert

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// TestEnqueueTxCommitsWithTheUpdate: EnqueueTx queues the event's deliveries
// and condition marks inside the watcher's commit, wakes delivery only once
// the commit is done, and leaves nothing behind when the commit rolls back.
func TestEnqueueTxCommitsWithTheUpdate(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "tlswatch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ob, err := store.NewOutbox(db.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	clock := newClock()
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{
		webhookChannel("hook", "http://127.0.0.1:1/hook", "s"),
		{Name: "pd", Type: TypePagerDuty, URL: "http://127.0.0.1:1/pd", RoutingKey: "k"},
	}}}, ob, clock, nil)

	rec := store.Record{ID: "w_1", Target: probe.TargetInfo{Host: "mcp.example.com", Port: 443}, Schedule: "@every 1h", State: "up"}
	apply := func(hookErr error, evs ...string) error {
		_, err := db.Apply([]store.Update{{Record: rec, Create: true, InTx: func(tx *store.Tx) error {
			for _, kind := range evs {
				ev := stageEvent("w_1", "7d", 5, LevelCritical)
				if kind == "rotated" {
					ev = rotatedEvent("w_1")
				}
				if err := d.EnqueueTx(tx, ev); err != nil {
					return err
				}
			}
			select {
			case <-d.kick:
				t.Error("delivery woken before the commit")
			default:
			}
			return hookErr
		}}})
		return err
	}

	if err := apply(errors.New("later update failed"), "stage"); err == nil {
		t.Fatal("Apply ignored the hook's error")
	}
	if n := pending(t, ob); n != 0 {
		t.Fatalf("%d entries queued by a rolled-back commit", n)
	}
	select {
	case <-d.kick:
		t.Error("delivery woken by a rolled-back commit")
	default:
	}

	if err := apply(nil, "stage"); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, ob); n != 2 {
		t.Fatalf("%d entries after a stage event to two channels, want 2", n)
	}
	select {
	case <-d.kick:
	case <-time.After(time.Second):
		t.Error("delivery not woken after the commit")
	}
	// The marks written in the transaction drive the next decision: the
	// rotation resolves the expiry condition on both channels.
	if err := apply(nil, "rotated"); err != nil {
		t.Fatal(err)
	}
	pend, err := ob.Pending(0)
	if err != nil {
		t.Fatal(err)
	}
	resolves := 0
	for _, e := range pend[2:] {
		if a := decodeJSON[Alert](t, e.Payload); a.Action == ActionResolve && a.Condition == ConditionExpiry {
			resolves++
		}
	}
	if resolves != 2 {
		t.Errorf("rotation after a stage alert: %d resolves queued, want 2 (one per channel told)", resolves)
	}
}
