package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/tlswatch/tlswatch/alert"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/owner"
)

// openWatch builds the watch.Service for serve from cfg.DBPath: the owner of
// the database runs the engine (and delivers alerts, when alerts is set), a
// second serve on the same --db follows it (see package watch/owner). The
// close func stops the engine and releases the database.
func openWatch(ctx context.Context, cfg Config, pr *watch.Prober, alerts *alert.Dispatcher, logger *slog.Logger) (watch.Service, func(), error) {
	if cfg.Etcd != nil {
		var a watch.Alerter
		if alerts != nil {
			a = alerts
		}
		svc, closeFn, err := joinEtcd(ctx, cfg.Etcd, engineConfig(cfg, pr, logger), a, logger.With("component", "cluster"))
		if err != nil {
			return nil, nil, err
		}
		logger.Info("watches shared through etcd", "node", cfg.Etcd.Node, "endpoints", strings.Join(cfg.Etcd.Client.Endpoints, ","), "prefix", cfg.Etcd.Keys.Prefix())
		return svc, closeFn, nil
	}
	if cfg.DBPath == "" {
		return nil, nil, fmt.Errorf("no --db path")
	}
	ocfg := owner.Config{
		DBPath: cfg.DBPath,
		Engine: engineConfig(cfg, pr, logger),
		Store:  storeOptions(cfg, logger),
	}
	if alerts != nil {
		ocfg.Alerts = alerts
	}
	m, err := owner.Open(ctx, ocfg)
	if err != nil {
		return nil, nil, fmt.Errorf("open watch database %s: %w", cfg.DBPath, err)
	}
	return m, func() {
		if err := m.Close(); err != nil {
			logger.Warn("closing the watch database", "err", err)
		}
	}, nil
}

// engineConfig is how serve runs the watch engine, embedded or on etcd
// (where each node's engine sees, and so caps, the whole cluster's
// watches).
func engineConfig(cfg Config, pr *watch.Prober, logger *slog.Logger) watch.Config {
	return watch.Config{Prober: pr, MinInterval: cfg.MinInterval, Logger: logger.With("component", "watch"),
		MaxWatches: cfg.MaxWatches, MaxWatchesPerSubject: cfg.MaxWatchesPerSubject}
}

// storeOptions are the database options of the process that owns it:
// history retention, scheduled backups, and a loud report when damage shows
// up while serving.
func storeOptions(cfg Config, logger *slog.Logger) store.Options {
	log := logger.With("component", "store")
	return store.Options{
		Retention: cfg.Retention,
		OnDamage: func(d *store.DamageError) {
			line, _ := dbAdvice(d)
			log.Error("watches are no longer saved: "+line, "db", d.Path)
		},
		Backup: store.BackupOptions{
			Every: cfg.BackupEvery,
			Keep:  cfg.BackupKeep,
			Dir:   cfg.BackupDir,
			Report: func(info store.BackupInfo, err error) {
				if err != nil {
					log.Error("database backup failed", "db", cfg.DBPath, "err", err)
					return
				}
				log.Info("database backed up", "file", info.Path, "bytes", info.Size)
			},
		},
	}
}

// serveGCPercent is the garbage collector's target for serve, unless GOGC
// says otherwise. The watcher keeps about 1 KiB of live heap per watch
// (100 MiB at 100,000); Go's default (100) lets the heap grow to twice the
// live heap before collecting, so that garbage alone (probe results, tool
// answers) took a 100,000-watch server past 300 MB. At 50 the heap stays
// within one and a half times the live heap, for collections about twice
// as often (BENCHMARKS.md has both). Prometheus lowers its default the
// same way.
const serveGCPercent = 50

// tuneGC applies serveGCPercent when the operator did not set GOGC.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}
