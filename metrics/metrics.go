// Package metrics exposes the watches as Prometheus metrics. It reads the
// watch service at scrape time, so the numbers are always those of the bbolt
// file and never a second copy that could drift.
//
// For people migrating from blackbox_exporter: tlswatch_chain_earliest_not_after_timestamp_seconds
// plays the part of probe_ssl_earliest_cert_expiry, but over the path
// clients verify (leaf included), never a served root that no client uses;
// tlswatch_cert_not_after_timestamp_seconds is the leaf's alone.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
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
	descNotBefore = prometheus.NewDesc("tlswatch_cert_not_before_timestamp_seconds",
		"Leaf certificate not_before as a Unix timestamp.", labels, nil)
	descEarliest = prometheus.NewDesc("tlswatch_chain_earliest_not_after_timestamp_seconds",
		"Earliest not_after of any certificate on the path clients verify, leaf included, as a Unix timestamp.", labels, nil)
	descPathNotBefore = prometheus.NewDesc("tlswatch_chain_cert_not_before_timestamp_seconds",
		"not_before of each certificate on the verified path (position 0 is the leaf), as a Unix timestamp.", append(labels, "position", "subject"), nil)
	descPathNotAfter = prometheus.NewDesc("tlswatch_chain_cert_not_after_timestamp_seconds",
		"not_after of each certificate on the verified path (position 0 is the leaf), as a Unix timestamp.", append(labels, "position", "subject"), nil)
	descMCPLatency = prometheus.NewDesc("tlswatch_mcp_latency_seconds",
		"MCP-level watches: the initialize round trip of the recent successful probes (the last 100 probes), as nearest-rank quantiles 0.5 and 0.95.", append(labels, "quantile"), nil)
	descMCPUptime = prometheus.NewDesc("tlswatch_mcp_uptime_ratio",
		"MCP-level watches: the share of the recent probes (the last 100) in which TLS and MCP both answered, 0 to 1.", labels, nil)
	descMCPTools = prometheus.NewDesc("tlswatch_mcp_tools",
		"MCP-level watches: the number of tools the server listed when last reached.", labels, nil)
	descMCPInfo = prometheus.NewDesc("tlswatch_mcp_info",
		"MCP-level watches: 1, labelled with the protocol version, server name and version, and tools hash the server showed when last reached.",
		append(labels, "protocol_version", "server", "server_version", "tools_hash"), nil)
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
		descDuration, descFailures, descLastCheck, descExpiryStage, descNotBefore, descEarliest,
		descPathNotBefore, descPathNotAfter, descMCPLatency, descMCPUptime, descMCPTools, descMCPInfo,
		descWatches, descScrapeErr} {
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
		mcpLevel(w, gauge)
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
			gauge(descNotBefore, float64(r.Leaf.NotBefore.Unix()))
			gauge(descDays, float64(r.Leaf.DaysRemaining))
			if d, ok := stageDays(r.ExpiryStage, r.Leaf); ok {
				gauge(descExpiryStage, d)
			}
		}
		if ch := r.Chain; ch != nil {
			if ch.EarliestNotAfter != nil {
				gauge(descEarliest, float64(ch.EarliestNotAfter.Unix()))
			}
			for i, v := range ch.Validity {
				pos := strconv.Itoa(i)
				gauge(descPathNotBefore, float64(v.NotBefore.Unix()), pos, v.Subject)
				gauge(descPathNotAfter, float64(v.NotAfter.Unix()), pos, v.Subject)
			}
		}
	}
}

// mcpLevel emits the MCP-level figures of a watch (none for the others).
func mcpLevel(w watch.Watch, gauge func(d *prometheus.Desc, v float64, extra ...string)) {
	if m := w.MCP; m != nil {
		gauge(descMCPTools, float64(m.ToolCount))
		gauge(descMCPInfo, 1, m.ProtocolVersion, m.Server.Name, m.Server.Version, m.ToolsHash)
	}
	s := w.MCPStats
	if s == nil {
		return
	}
	gauge(descMCPUptime, s.Uptime)
	if s.LatencyMSP50 != nil && s.LatencyMSP95 != nil {
		gauge(descMCPLatency, *s.LatencyMSP50/1000, "0.5")
		gauge(descMCPLatency, *s.LatencyMSP95/1000, "0.95")
	}
}

// stageDays is the gauge value of a stage: its threshold in days (an hour
// or percent threshold converted for this certificate), 0 once expired.
func stageDays(stage probe.Stage, leaf *probe.CertInfo) (float64, bool) {
	if stage == probe.StageExpired {
		return 0, true
	}
	th, ok := stage.Threshold()
	if !ok {
		return 0, false
	}
	life := probe.Validity{NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}.Lifetime()
	return th.Span(life).Hours() / 24, true
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
