package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tlswatch/tlswatch/watch"
)

// openWatch builds the watch.Service for serve from cfg.DBPath: the owner of
// the database runs the scheduler, a second serve on the same --db follows
// it (see package watch). The close func stops the scheduler and releases
// the database.
func openWatch(ctx context.Context, cfg Config, probeFn watch.ProbeFunc, hooks *ownerHooks, logger *slog.Logger) (watch.Service, func(), error) {
	if cfg.DBPath == "" {
		return nil, nil, fmt.Errorf("no --db path")
	}
	wcfg := watch.Config{
		DBPath:      cfg.DBPath,
		Probe:       probeFn,
		MinInterval: cfg.MinInterval,
		Logger:      logger.With("component", "watch"),
	}
	if hooks != nil {
		wcfg.OnOwnerStart, wcfg.OnOwner = hooks.start, hooks.run
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
