package watch

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/tlswatch/tlswatch/store"
)

// writeOp is one update for the writer.
type writeOp struct {
	up     store.Update
	done   chan error // non-nil: caller waits for the commit
	urgent bool       // commit now (a change waiting or a caller waiting)
	change *Change    // published once the update is durable; nil for none
}

const maxBatch = 1000

// writer group-commits: a batch is committed when a caller or a change is
// waiting, when it reaches maxBatch, or FlushInterval after its first op.
// Changes are published only after their batch is durable, so an alert is
// recorded before anyone is told and never repeats after a restart.
func (e *Engine) writer() {
	defer e.wwg.Done()
	timer := e.clock.NewTimer(time.Hour)
	timer.Stop()
	lastRelease := e.clock.Now()
	for {
		if e.clock.Now().Sub(lastRelease) > releaseEvery {
			e.releaseMemory()
			lastRelease = e.clock.Now()
		}
		op, ok := <-e.writes
		if !ok {
			return
		}
		timer.Reset(e.cfg.FlushInterval)
		batch := e.collect(op, timer)
		timer.Stop()
		e.commit(batch)
	}
}

// collect gathers the batch that op starts.
func (e *Engine) collect(op *writeOp, timer Timer) []*writeOp {
	batch := []*writeOp{op}
	urgent := op.urgent
	for len(batch) < maxBatch {
		if urgent {
			// Take what is already queued, without waiting.
			select {
			case op, ok := <-e.writes:
				if !ok {
					return batch
				}
				batch = append(batch, op)
				continue
			default:
				return batch
			}
		}
		select {
		case op, ok := <-e.writes:
			if !ok {
				return batch
			}
			batch = append(batch, op)
			urgent = urgent || op.urgent
		case <-timer.C():
			return batch
		}
	}
	return batch
}

func (e *Engine) commit(batch []*writeOp) {
	ups := make([]store.Update, len(batch))
	for i, op := range batch {
		ups[i] = op.up
		if e.cfg.Hook != nil && op.change != nil {
			ups[i].InTx = e.inTx(*op.change)
		}
	}
	applied, err := e.st.Apply(ups)
	if err != nil {
		e.log.Error("watch: commit failed; results and alerts of this batch are lost", "ops", len(batch), "err", err)
	}
	for i, op := range batch {
		ok := i < len(applied) && applied[i]
		if op.done != nil {
			switch {
			case ok:
				op.done <- nil
			case err != nil:
				op.done <- err
			default:
				op.done <- errNotApplied
			}
		}
		if ok && op.change != nil {
			e.hub.Publish(*op.change)
		}
	}
}

// errNotApplied: the store did not apply a write because another writer
// changed the watch first (a store shared by cluster nodes); the engine's
// copy has been brought up to date, and the caller may decide again.
var errNotApplied = errors.New("watch: changed by another writer meanwhile")

// inTx runs the commit hook for one Change inside its transaction. A
// panicking hook is our bug: it rolls the batch back rather than take the
// process down (the results are probed again next time).
func (e *Engine) inTx(c Change) func(tx store.OutboxTx) error {
	return func(tx store.OutboxTx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				e.log.Error("watch: commit hook panicked", "panic", r, "stack", string(debug.Stack()))
				err = fmt.Errorf("commit hook panicked: %v", r)
			}
		}()
		return e.cfg.Hook(tx, c)
	}
}
