// Package metrics exposes the watches as Prometheus metrics. It reads the
// watch service at scrape time, so the numbers are always those of the bbolt
// file and never a second copy that could drift.
//
// The watch metrics are written as they are made, in the text exposition
// format, not gathered first: at 100,000 watches the exposition is about
// 70 MB, and client_golang's registry builds every sample as an object
// before it writes one (gigabytes for eight scrapes at once). Here the
// watches are read a page at a time into one small row each (the numbers
// the metrics show, about 150 bytes a watch, the Reports dropped with their
// page), then each metric family is written from the rows
// straight to the response, compressed when the scraper accepts gzip. The
// Go and process metrics, a few hundred samples, still come from
// client_golang's collectors.
//
// For people migrating from blackbox_exporter: tlswatch_chain_earliest_not_after_timestamp_seconds
// plays the part of probe_ssl_earliest_cert_expiry, but over the path
// clients verify (leaf included), never a served root that no client uses;
// tlswatch_cert_not_after_timestamp_seconds is the leaf's alone.
package metrics

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// Lister is the part of watch.Service the handler needs: the watches a
// page at a time.
type Lister interface {
	List(ctx context.Context, cursor string, limit int) (watch.WatchPage, error)
}

// family is one watch metric: its name, help, and how a row shows in it.
type family struct {
	name, help string
	samples    func(r *row, emit func(value float64, extra ...string))
}

var statuses = []probe.Status{probe.StatusOK, probe.StatusWarning, probe.StatusCritical, probe.StatusDown}

// families are the metrics per watch, labelled id and target (and status
// for the state set).
var families = []family{
	{"tlswatch_cert_not_after_timestamp_seconds", "Leaf certificate not_after as a Unix timestamp (cf. blackbox_exporter probe_ssl_earliest_cert_expiry, but the leaf, never a served root).",
		func(r *row, emit func(float64, ...string)) {
			if r.leaf {
				emit(r.notAfter)
			}
		}},
	{"tlswatch_cert_days_remaining", "Whole days until the leaf certificate expires, rounded down; negative once expired.",
		func(r *row, emit func(float64, ...string)) {
			if r.leaf {
				emit(r.days)
			}
		}},
	{"tlswatch_watch_up", "1 when the watch is up, 0 when down (after the failure threshold); absent while pending.",
		func(r *row, emit func(float64, ...string)) {
			if r.up >= 0 {
				emit(float64(r.up))
			}
		}},
	{"tlswatch_watch_status", "Status of the latest probe as a state set: 1 for the current status, 0 for the others.",
		func(r *row, emit func(float64, ...string)) {
			if r.reported {
				for _, s := range statuses {
					emit(b2f(r.status == s), "status", string(s))
				}
			}
		}},
	{"tlswatch_probe_success", "1 when the latest probe completed a trusted TLS connection, else 0.",
		func(r *row, emit func(float64, ...string)) {
			if r.reported {
				emit(b2f(r.success))
			}
		}},
	{"tlswatch_probe_duration_seconds", "Total duration of the latest probe.",
		func(r *row, emit func(float64, ...string)) {
			if r.reported {
				emit(r.duration)
			}
		}},
	{"tlswatch_watch_consecutive_failures", "Consecutive failed probes of the watch.",
		func(r *row, emit func(float64, ...string)) { emit(float64(r.failures)) }},
	{"tlswatch_last_check_timestamp_seconds", "When the watch was last probed, as a Unix timestamp.",
		func(r *row, emit func(float64, ...string)) {
			if r.checked != 0 {
				emit(r.checked)
			}
		}},
	{"tlswatch_cert_expiry_stage_days", "The expiry stage threshold in days the leaf is at (0 when expired); absent at stage none.",
		func(r *row, emit func(float64, ...string)) {
			if r.stage >= 0 {
				emit(r.stage)
			}
		}},
	{"tlswatch_cert_not_before_timestamp_seconds", "Leaf certificate not_before as a Unix timestamp.",
		func(r *row, emit func(float64, ...string)) {
			if r.leaf {
				emit(r.notBefore)
			}
		}},
	{"tlswatch_chain_earliest_not_after_timestamp_seconds", "Earliest not_after of any certificate on the path clients verify, leaf included, as a Unix timestamp.",
		func(r *row, emit func(float64, ...string)) {
			if r.earliest != 0 {
				emit(r.earliest)
			}
		}},
	{"tlswatch_chain_cert_not_before_timestamp_seconds", "not_before of each certificate on the verified path (position 0 is the leaf), as a Unix timestamp.",
		func(r *row, emit func(float64, ...string)) {
			for i, v := range r.path {
				emit(v.notBefore, "position", strconv.Itoa(i), "subject", v.subject)
			}
		}},
	{"tlswatch_chain_cert_not_after_timestamp_seconds", "not_after of each certificate on the verified path (position 0 is the leaf), as a Unix timestamp.",
		func(r *row, emit func(float64, ...string)) {
			for i, v := range r.path {
				emit(v.notAfter, "position", strconv.Itoa(i), "subject", v.subject)
			}
		}},
	{"tlswatch_mcp_latency_seconds", "MCP-level watches: the initialize round trip of the recent successful probes (the last 100 probes), as nearest-rank quantiles 0.5 and 0.95.",
		func(r *row, emit func(float64, ...string)) {
			if s := r.mcpStats; s != nil && s.LatencyMSP50 != nil && s.LatencyMSP95 != nil {
				emit(*s.LatencyMSP50/1000, "quantile", "0.5")
				emit(*s.LatencyMSP95/1000, "quantile", "0.95")
			}
		}},
	{"tlswatch_mcp_uptime_ratio", "MCP-level watches: the share of the recent probes (the last 100) in which TLS and MCP both answered, 0 to 1.",
		func(r *row, emit func(float64, ...string)) {
			if r.mcpStats != nil {
				emit(r.mcpStats.Uptime)
			}
		}},
	{"tlswatch_mcp_tools", "MCP-level watches: the number of tools the server listed when last reached.",
		func(r *row, emit func(float64, ...string)) {
			if r.mcp != nil {
				emit(float64(r.mcp.ToolCount))
			}
		}},
	{"tlswatch_mcp_info", "MCP-level watches: 1, labelled with the protocol version, server name and version, and tools hash the server showed when last reached.",
		func(r *row, emit func(float64, ...string)) {
			if m := r.mcp; m != nil {
				emit(1, "protocol_version", m.ProtocolVersion, "server", m.Server.Name, "server_version", m.Server.Version, "tools_hash", m.ToolsHash)
			}
		}},
	{"tlswatch_probe_tls_duration_seconds", "TLS handshake time of the latest probe (cf. blackbox_exporter probe_http_duration_seconds{phase=\"tls\"}); absent when it completed none.",
		func(r *row, emit func(float64, ...string)) {
			if r.tls > 0 {
				emit(r.tls)
			}
		}},
	{"tlswatch_watch_uptime_ratio", "Share of probes that were not down over the window: the last 24 UTC hours or 30 UTC days, the current one included (what avg_over_time(probe_success[30d]) gives blackbox_exporter users, kept by tlswatch instead of Prometheus). From tlswatch's history, refreshed every few minutes.",
		func(r *row, emit func(float64, ...string)) {
			for i, f := range r.recent {
				if !math.IsNaN(f.up) {
					emit(f.up, "window", windows[i])
				}
			}
		}},
	{"tlswatch_tls_handshake_duration_seconds", "Quantiles (0.5, 0.95) of the TLS handshake time over the window (24h, 30d), within 1% of the exact figure, from tlswatch's history.",
		func(r *row, emit func(float64, ...string)) {
			for i, f := range r.recent {
				if !math.IsNaN(f.p50) {
					emit(f.p50, "window", windows[i], "quantile", "0.5")
					emit(f.p95, "window", windows[i], "quantile", "0.95")
				}
			}
		}},
}

// row is what the metrics show of one watch.
type row struct {
	id, target                string
	up                        int8 // 1 up, 0 down, -1 pending
	failures                  int
	checked                   float64 // Unix seconds; 0 never
	reported, success         bool
	status                    probe.Status
	duration                  float64
	leaf                      bool
	notBefore, notAfter, days float64
	stage                     float64 // days; 0 expired; -1 none
	earliest                  float64 // the path's earliest not_after; 0 unknown
	path                      []pathCert
	mcp                       *watch.MCPInfo  // MCP-level watches only
	mcpStats                  *watch.MCPStats // MCP-level watches only
	tls                       float64         // the latest handshake, seconds; 0 none
	recent                    [len(windows)]windowFigures
}

// pathCert is one certificate of the verified path.
type pathCert struct {
	subject             string
	notBefore, notAfter float64
}

func rowOf(w *watch.Watch) row {
	r := row{id: w.ID, target: w.Target.String(), up: -1, failures: w.ConsecutiveFailures, stage: -1, mcp: w.MCP, mcpStats: w.MCPStats}
	switch w.State {
	case watch.StateUp:
		r.up = 1
	case watch.StateDown:
		r.up = 0
	}
	if w.LastCheckedAt != nil {
		r.checked = float64(w.LastCheckedAt.UnixMilli()) / 1000
	}
	r.recent[0] = figuresOf(w.Uptime24h, w.LatencyP50MS24h, w.LatencyP95MS24h)
	r.recent[1] = figuresOf(w.Uptime30d, w.LatencyP50MS30d, w.LatencyP95MS30d)
	rep := w.LastReport
	if rep == nil {
		return r
	}
	r.reported, r.status, r.success, r.duration = true, rep.Status, rep.Reachable && rep.Trusted, rep.Timing.Total/1000
	r.tls = rep.Timing.Handshake / 1000
	if l := rep.Leaf; l != nil {
		r.leaf, r.notAfter, r.days = true, float64(l.NotAfter.Unix()), float64(l.DaysRemaining)
		r.notBefore = float64(l.NotBefore.Unix())
		if d, ok := stageDays(rep.ExpiryStage, l); ok {
			r.stage = d
		}
	}
	if ch := rep.Chain; ch != nil {
		if ch.EarliestNotAfter != nil {
			r.earliest = float64(ch.EarliestNotAfter.Unix())
		}
		for _, v := range ch.Validity {
			r.path = append(r.path, pathCert{subject: v.Subject, notBefore: float64(v.NotBefore.Unix()), notAfter: float64(v.NotAfter.Unix())})
		}
	}
	return r
}

// windowFigures are a watch's uptime and handshake quantiles over one
// window of its history; NaN where it has none.
type windowFigures struct{ up, p50, p95 float64 }

var windows = [...]string{"24h", "30d"}

func figuresOf(up, p50, p95 *float64) windowFigures {
	f := windowFigures{math.NaN(), math.NaN(), math.NaN()}
	if up != nil {
		f.up = *up
	}
	if p50 != nil && p95 != nil {
		f.p50, f.p95 = *p50/1000, *p95/1000
	}
	return f
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

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// scrapeTimeout bounds reading the watches for one scrape.
const scrapeTimeout = 15 * time.Second

// Handler serves /metrics: the watch metrics (streamed, see above) plus the
// Go and process collectors, on a private registry so nothing global leaks
// in.
func Handler(src Lister, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), scrapeTimeout)
		defer cancel()
		rows, err := readRows(ctx, src)
		if err != nil {
			log.Error("metrics: reading the watches", "err", err)
		}
		fams, gerr := reg.Gather()
		if gerr != nil {
			log.Error("metrics: gathering the process metrics", "err", gerr)
		}
		out := io.Writer(w)
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		if strings.Contains(req.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			defer gz.Close()
			out = gz
		}
		bw := bufio.NewWriterSize(out, 64<<10)
		defer bw.Flush()
		writeWatches(bw, rows, err != nil)
		enc := expfmt.NewEncoder(bw, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range fams {
			if err := enc.Encode(f); err != nil {
				log.Debug("metrics: writing", "err", err)
				return
			}
		}
	})
}

// readRows reads every watch, a page at a time, into its row.
func readRows(ctx context.Context, src Lister) ([]row, error) {
	var rows []row
	cursor := ""
	for {
		p, err := src.List(ctx, cursor, watch.MaxPageLimit)
		if err != nil {
			return nil, err
		}
		for i := range p.Watches {
			rows = append(rows, rowOf(&p.Watches[i]))
		}
		if p.NextCursor == "" {
			return rows, nil
		}
		cursor = p.NextCursor
	}
}

// writeWatches writes the watch metrics in the text format: each family
// whole (the format wants a family's samples together), then the count
// and whether the scrape could read the watches.
func writeWatches(w *bufio.Writer, rows []row, failed bool) {
	if !failed {
		for _, f := range families {
			header(w, f.name, f.help)
			for i := range rows {
				r := &rows[i]
				f.samples(r, func(v float64, extra ...string) { sample(w, f.name, r, v, extra...) })
			}
		}
		header(w, "tlswatch_watches", "Number of watches.")
		fmt.Fprintf(w, "tlswatch_watches %d\n", len(rows))
	}
	header(w, "tlswatch_scrape_error", "1 when the watches could not be read for this scrape.")
	fmt.Fprintf(w, "tlswatch_scrape_error %d\n", int(b2f(failed)))
}

func header(w *bufio.Writer, name, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", name, helpEscaper.Replace(help), name)
}

func sample(w *bufio.Writer, name string, r *row, v float64, extra ...string) {
	w.WriteString(name)
	w.WriteString(`{id="`)
	w.WriteString(labelEscaper.Replace(r.id))
	w.WriteString(`",target="`)
	w.WriteString(labelEscaper.Replace(r.target))
	for i := 0; i+1 < len(extra); i += 2 {
		fmt.Fprintf(w, `",%s="%s`, extra[i], labelEscaper.Replace(extra[i+1]))
	}
	w.WriteString(`"} `)
	w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	w.WriteByte('\n')
}

// The text format's escapes: in HELP, backslash and newline; in label
// values, also the double quote.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)
