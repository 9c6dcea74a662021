package alert

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// TestEnqueueTxCommitsWithTheUpdate: the commit hook Attach returns queues
// the deliveries of every event of a Change and the condition marks inside
// the watcher's commit, wakes delivery only once the commit is done, and
// leaves nothing behind when the commit rolls back.
func TestEnqueueTxCommitsWithTheUpdate(t *testing.T) {
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "tlswatch.db"))
	d, err := NewDispatcher(Config{Alerts: Alerts{Channels: []Channel{
		webhookChannel("hook", "http://127.0.0.1:1/hook", "s"),
		{Name: "pd", Type: TypePagerDuty, URL: "http://127.0.0.1:1/pd", RoutingKey: "k"},
	}}}, Options{Now: newClock().Now, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hook := d.Attach(ob.Outbox)
	apply := func(hookErr error, evs ...event) error {
		c := watch.Change{Watch: evs[0].Watch}
		for _, ev := range evs {
			c.Events = append(c.Events, ev.Event)
		}
		return ob.commit(c.Watch, func(tx store.OutboxTx) error {
			if err := hook(tx, c); err != nil {
				return err
			}
			select {
			case <-d.kick:
				t.Error("delivery woken before the commit")
			default:
			}
			return hookErr
		})
	}
	if err := apply(errors.New("later update failed"), stageEvent("w_1", "7d", 5, watch.LevelCritical)); err == nil {
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
	// One Change with a watch_added (not an alert) and a stage crossing.
	added := stageEvent("w_1", "7d", 5, watch.LevelCritical)
	added.Kind = watch.EventWatchAdded
	if err := apply(nil, added, stageEvent("w_1", "7d", 5, watch.LevelCritical)); err != nil {
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
	if err := apply(nil, rotatedEvent("w_1")); err != nil {
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
