package owner

import (
	"context"

	"github.com/tlswatch/tlswatch/store"
)

// prune runs the history pruner for this ownership period: it deletes what
// is past its retention (and converts an older file's history first) every
// Config.PruneEvery, in short transactions between the engine's commits.
// Only the owner prunes: it is the only process that may write the file.
func (m *Manager) prune(o *owned) {
	ctx, cancel := context.WithCancel(m.ctx)
	done := make(chan struct{})
	o.pruneCancel, o.pruneDone = cancel, done
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				m.log.Error("watch: the history pruner panicked", "panic", r)
			}
		}()
		o.db.RunPruner(ctx, m.cfg.PruneEvery, func(st store.PruneStats, err error) {
			switch {
			case err != nil:
				m.log.Warn("watch: prune history", "err", err)
			case st.Samples+st.Hours+st.Reports > 0 || st.BudgetActive:
				m.log.Info("watch: pruned history past its retention", "samples", st.Samples, "hours", st.Hours,
					"reports", st.Reports, "live_bytes", st.LiveBytes, "size_budget_active", st.BudgetActive)
			}
		})
	}()
}

// stopPrune ends this ownership period's pruner and waits for it.
func (o *owned) stopPrune() {
	if o.pruneCancel != nil {
		o.pruneCancel()
		<-o.pruneDone
	}
}
