// Package metrics exposes the watches as Prometheus metrics. It reads the
// watch service at scrape time, so the numbers are always those of the bbolt
// file and never a second copy that could drift.
//
// For people migrating from blackbox_exporter: tlswatch_cert_not_after_timestamp_seconds
// plays the part of probe_ssl_earliest_cert_expiry, but it is the leaf's
// not_after, never a served root that no client uses.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// Lister is the part of watch.Service the collector needs.
type Lister interface {
	List(ctx context.Context) ([]watch.Watch, error)
}

var labels = []string{"id", "target"}

var (
	descNotAfter = prometheus.NewDesc("tlswatch_cert_not_after_timestamp_seconds",
		"Leaf certificate not_after as a Unix timestamp (cf. blackbox_exporter probe_ssl_earliest_cert_expiry, but the leaf, never a served root).", labels, nil)
	descDays = prometheus.NewDesc("tlswatch_cert_days_remaining",
		"Whole days until the leaf certificate expires, rounded down; negative once expired.", labels, nil)
	descUp = prometheus.NewDesc("tlswatch_watch_up",
		"1 when the watch is up, 0 when down (after the failure threshold); absent while pending.", labels, nil)
	descStatus = prometheus.NewDesc("tlswatch_watch_status",
		"Status of the latest probe as a state set: 1 for the current status, 0 for the others.", append(labels, "status"), nil)
	descSuccess = prometheus.NewDesc("tlswatch_probe_success",
		"1 when the latest probe completed a trusted TLS connection, else 0.", labels, nil)
	descDuration = prometheus.NewDesc("tlswatch_probe_duration_seconds",
		"Total duration of the latest probe.", labels, nil)
	descFailures = prometheus.NewDesc("tlswatch_watch_consecutive_failures",
		"Consecutive failed probes of the watch.", labels, nil)
	descLastCheck = prometheus.NewDesc("tlswatch_last_check_timestamp_seconds",
		"When the watch was last probed, as a Unix timestamp.", labels, nil)
	descExpiryStage = prometheus.NewDesc("tlswatch_cert_expiry_stage_days",
		"The expiry stage threshold in days the leaf is at (0 when expired); absent at stage none.", labels, nil)
	descWatches = prometheus.NewDesc("tlswatch_watches",
		"Number of watches.", nil, nil)
	descScrapeErr = prometheus.NewDesc("tlswatch_scrape_error",
		"1 when the watches could not be read for this scrape.", nil, nil)
)

var statuses = []probe.Status{probe.StatusOK, probe.StatusWarning, probe.StatusCritical, probe.StatusDown}

// Collector is a prometheus.Collector over a watch list.
type Collector struct {
	src     Lister
	timeout time.Duration
}

// NewCollector returns a collector reading src at each scrape.
func NewCollector(src Lister) *Collector { return &Collector{src: src, timeout: 10 * time.Second} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNotAfter, descDays, descUp, descStatus, descSuccess,
		descDuration, descFailures, descLastCheck, descExpiryStage, descWatches, descScrapeErr} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ws, err := c.src.List(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 0)
	ch <- prometheus.MustNewConstMetric(descWatches, prometheus.GaugeValue, float64(len(ws)))
	for _, w := range ws {
		lv := []string{w.ID, targetLabel(w.Target)}
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(lv, extra...)...)
		}
		gauge(descFailures, float64(w.ConsecutiveFailures))
		switch w.State {
		case watch.StateUp:
			gauge(descUp, 1)
		case watch.StateDown:
			gauge(descUp, 0)
		}
		if w.LastCheckedAt != nil {
			gauge(descLastCheck, float64(w.LastCheckedAt.UnixMilli())/1000)
		}
		r := w.LastReport
		if r == nil {
			continue
		}
		for _, s := range statuses {
			gauge(descStatus, b2f(r.Status == s), string(s))
		}
		gauge(descSuccess, b2f(r.Reachable && r.Trusted))
		gauge(descDuration, r.Timing.Total/1000)
		if r.Leaf != nil {
			gauge(descNotAfter, float64(r.Leaf.NotAfter.Unix()))
			gauge(descDays, float64(r.Leaf.DaysRemaining))
		}
		if d, ok := stageDays(r.ExpiryStage); ok {
			gauge(descExpiryStage, float64(d))
		}
	}
}

// stageDays is the gauge value of a stage: its threshold, 0 once expired.
func stageDays(stage probe.Stage) (int, bool) {
	if stage == probe.StageExpired {
		return 0, true
	}
	return stage.Days()
}

func targetLabel(t probe.TargetInfo) string { return t.String() }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves /metrics: the watch metrics plus the Go and process
// collectors, on a private registry so nothing global leaks in.
func Handler(src Lister, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := promhttp.HandlerOpts{Timeout: 15 * time.Second}
	if log != nil {
		opts.ErrorLog = slogErrorLogger{log}
	}
	return promhttp.HandlerFor(reg, opts)
}

type slogErrorLogger struct{ log *slog.Logger }

func (l slogErrorLogger) Println(v ...any) { l.log.Error("metrics", "error", v) }
