package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tlswatch/tlswatch/alert"
	"github.com/tlswatch/tlswatch/metrics"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// alertDispatcher loads the operator's --config; nil when no config (or no
// channel) is given. The dispatcher delivers only while this process owns
// the database (package watch/owner attaches it to the owned outbox), so two
// serve processes on one --db never send an alert twice. Receivers are
// dialled through the probes' outbound policy and verified with their
// trust store.
func alertDispatcher(cfg Config, base probe.Options, logger *slog.Logger) (*alert.Dispatcher, error) {
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
	dialer := base.Policy.Dialer(net.Dialer{Timeout: 10 * time.Second})
	d, err := alert.NewDispatcher(acfg, alert.Options{Logger: logger.With("component", "alert"), DialContext: dialer.DialContext, RootCAs: base.Roots})
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	return d, nil
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
