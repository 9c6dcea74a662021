package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// openWatch builds the watch.Service for serve from cfg.DBPath: the owner of
// the database runs the scheduler, a second serve on the same --db follows
// it (see package watch). The close func stops the scheduler and releases
// the database.
func openWatch(ctx context.Context, cfg Config, probeFn watch.ProbeFunc, onOwner func(ctx context.Context, m *watch.Manager, db *store.DB), logger *slog.Logger) (watch.Service, func(), error) {
	if cfg.DBPath == "" {
		return nil, nil, fmt.Errorf("no --db path")
	}
	var m *watch.Manager
	wcfg := watch.Config{
		DBPath:      cfg.DBPath,
		Probe:       probeFn,
		MinInterval: cfg.MinInterval,
		Logger:      logger.With("component", "watch"),
	}
	if onOwner != nil {
		ready := make(chan struct{})
		wcfg.OnOwner = func(ctx context.Context, db *store.DB) {
			// The hook may start before Open has returned m.
			select {
			case <-ready:
			case <-ctx.Done():
				return
			}
			if m != nil {
				onOwner(ctx, m, db)
			}
		}
		defer close(ready)
	}
	m, err := watch.Open(ctx, wcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("open watch database %s: %w", cfg.DBPath, err)
	}
	return m, func() {
		if err := m.Close(); err != nil {
			logger.Warn("closing the watch database", "err", err)
		}
	}, nil
}
