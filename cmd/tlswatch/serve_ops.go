package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/alert"
	"github.com/tlswatch/tlswatch/auth"
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
// mode where there is no HTTP listener to share. The metrics name every
// watched target: --metrics-token guards them as --token guards /mcp, and
// a bind beyond loopback without it gets the same loud warning.
func serveMetrics(ctx context.Context, cfg Config, watches watch.Service, logger *slog.Logger, stderr io.Writer) (stop func(), err error) {
	a, err := listenAddr("--metrics", cfg.MetricsAddr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", cfg.MetricsAddr, err)
	}
	var authn auth.Authenticator = auth.Open{}
	if cfg.MetricsToken != "" {
		authn = auth.NewStaticToken(cfg.MetricsToken)
	} else if !isLoopbackAddr(ln.Addr()) {
		fmt.Fprintf(stderr, "\n"+
			"WARNING: tlswatch serves /metrics on %s, beyond loopback, WITHOUT a token.\n"+
			"WARNING: anyone who can reach this address can read every watched target and its state.\n"+
			"WARNING: set --metrics-token (or TLSWATCH_METRICS_TOKEN), or bind 127.0.0.1.\n\n", ln.Addr())
	}
	mux := http.NewServeMux()
	mux.Handle(metricsPath, hostGuard(guard(authn, 0, metrics.Handler(watches, logger))))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener", "err", err)
		}
	}()
	logger.Info("serving Prometheus metrics", "url", "http://"+ln.Addr().String()+metricsPath, "token", cfg.MetricsToken != "")
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}

// hostGuard refuses (403) a request that reached a loopback listener with
// a Host that is not a loopback name: a web page whose name was rebound to
// 127.0.0.1 must not read the metrics (mcp-go does the same for /mcp).
func hostGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if local != nil && isLoopbackAddr(local) && !isLoopbackHost(r.Host) {
			http.Error(w, "Forbidden: invalid Host header", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isLoopbackHost reports whether a Host header names this machine.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
