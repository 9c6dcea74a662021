package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/alert"
	"github.com/tlswatch/tlswatch/metrics"
	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// ownerHooks are what the process that owns the database runs for alerts:
// start (watch.Config.OnOwnerStart) builds the dispatcher over the bbolt
// outbox and returns its commit hook, so that alert deliveries are queued in
// the same transaction that records their cause; run (watch.Config.OnOwner)
// delivers them until the ownership ends. Only the owner queues and
// delivers, so two serve processes on one --db never send an alert twice.
type ownerHooks struct {
	start func(db *store.DB) watch.CommitHook
	run   func(ctx context.Context, db *store.DB)
}

// alertHooks loads the operator's --config; nil when no config (or no
// channel) is given.
func alertHooks(cfg Config, policy *netpolicy.Policy, roots *x509.CertPool, logger *slog.Logger) (*ownerHooks, error) {
	if cfg.ConfigPath == "" {
		return nil, nil
	}
	acfg, err := alert.LoadConfig(cfg.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	if len(acfg.Alerts.Channels) == 0 {
		return nil, nil
	}
	log := logger.With("component", "alert")
	dialer := policy.Dialer(net.Dialer{Timeout: 10 * time.Second})
	var (
		mu  sync.Mutex
		cur *alert.Dispatcher // of the current ownership period
	)
	return &ownerHooks{
		start: func(db *store.DB) watch.CommitHook {
			ob, err := store.NewOutbox(db.Bolt())
			if err != nil {
				log.Error("alert outbox unavailable; alerts go out as MCP notifications only", "err", err)
				return nil
			}
			d, err := alert.NewDispatcher(acfg, ob, alert.Options{Logger: log, DialContext: dialer.DialContext, RootCAs: roots})
			if err != nil {
				log.Error("alert dispatcher", "err", err)
				return nil
			}
			mu.Lock()
			cur = d
			mu.Unlock()
			return d.EnqueueTx
		},
		run: func(ctx context.Context, db *store.DB) {
			mu.Lock()
			d := cur
			mu.Unlock()
			if d == nil {
				return // start failed and said why
			}
			// Run also delivers what a previous owner (or this process
			// before a crash) left queued.
			if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("alert delivery stopped", "err", err)
			}
		},
	}, nil
}

// serveMetrics serves /metrics on its own listener (--metrics), for stdio
// mode where there is no HTTP listener to share.
func serveMetrics(ctx context.Context, addr string, watches watch.Service, logger *slog.Logger) (stop func(), err error) {
	a, err := listenAddr("--metrics", addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(metricsPath, metrics.Handler(watches, logger))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener", "err", err)
		}
	}()
	logger.Info("serving Prometheus metrics", "url", "http://"+ln.Addr().String()+metricsPath)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}
