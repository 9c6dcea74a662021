package metrics

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// staticList serves its watches in pages of two, whatever the limit, so
// that a scrape reads several pages.
type staticList []watch.Watch

func (s staticList) List(_ context.Context, cursor string, _ int) (watch.WatchPage, error) {
	start, _ := strconv.Atoi(cursor)
	end := min(start+2, len(s))
	p := watch.WatchPage{Watches: s[start:end]}
	if end < len(s) {
		p.NextCursor = strconv.Itoa(end)
	}
	return p, nil
}

func TestScrapeMatchesWatches(t *testing.T) {
	notAfter := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	notBefore := notAfter.Add(-90*24*time.Hour + time.Second)
	interExpiry := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	checked := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	chain := &probe.ChainInfo{EarliestNotAfter: &interExpiry, Validity: []probe.CertValidity{
		{Subject: "CN=a.example", NotBefore: notBefore, NotAfter: notAfter},
		{Subject: "CN=Inter", NotBefore: notBefore.AddDate(-1, 0, 0), NotAfter: interExpiry},
	}}
	f := func(v float64) *float64 { return &v }
	ws := staticList{
		{ID: "w_up", Target: probe.TargetInfo{Host: "a.example", Port: 443}, State: watch.StateUp, LastCheckedAt: &checked,
			LastReport: &probe.Report{Status: probe.StatusCritical, Reachable: true, Trusted: true, ExpiryStage: "7d",
				Leaf: &probe.CertInfo{NotBefore: notBefore, NotAfter: notAfter, DaysRemaining: 4}, Chain: chain, Timing: probe.Timing{Handshake: 40, Total: 250}},
			Uptime24h: f(0.9583), Uptime30d: f(0.999), LatencyP50MS24h: f(12), LatencyP95MS24h: f(30), LatencyP50MS30d: f(11), LatencyP95MS30d: f(25)},
		{ID: "w_pct", Target: probe.TargetInfo{Host: "d.example", Port: 443}, State: watch.StateUp,
			LastReport: &probe.Report{Status: probe.StatusWarning, Reachable: true, Trusted: true, ExpiryStage: "10%",
				Leaf: &probe.CertInfo{NotBefore: notBefore, NotAfter: notAfter, DaysRemaining: 4}}},
		{ID: "w_down", Target: probe.TargetInfo{Host: "b.example", Port: 8443}, State: watch.StateDown, ConsecutiveFailures: 3,
			LastReport: &probe.Report{Status: probe.StatusDown, ExpiryStage: "none"}},
		{ID: "w_new", Target: probe.TargetInfo{Host: "c.example", Port: 443}, State: watch.StatePending},
		{ID: "w_mcp", Target: probe.TargetInfo{Host: "e.example", Port: 443}, State: watch.StateUp, MCPLevel: true,
			MCP: &watch.MCPInfo{ProtocolVersion: "2025-11-25", Server: probe.MCPServer{Name: "srv", Version: "1.2"}, ToolCount: 7,
				ToolsHash: "sha256:ab", LatencyMS: 20},
			MCPStats: &watch.MCPStats{Probes: 4, Uptime: 0.75, LatencyMSP50: ptr(12.0), LatencyMSP95: ptr(80.0)}},
	}
	srv := httptest.NewServer(Handler(ws, nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	get := func(name, id string, extra ...string) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
	next:
		for _, m := range f.GetMetric() {
			lbl := map[string]string{}
			for _, lp := range m.GetLabel() {
				lbl[lp.GetName()] = lp.GetValue()
			}
			if lbl["id"] != id {
				continue
			}
			for i := 0; i+1 < len(extra); i += 2 {
				if lbl[extra[i]] != extra[i+1] {
					continue next
				}
			}
			return m.GetGauge().GetValue(), true
		}
		return 0, false
	}
	checks := []struct {
		name, id string
		extra    []string
		want     float64
		present  bool
	}{
		{"tlswatch_cert_not_after_timestamp_seconds", "w_up", nil, float64(notAfter.Unix()), true},
		{"tlswatch_cert_days_remaining", "w_up", nil, 4, true},
		{"tlswatch_watch_up", "w_up", nil, 1, true},
		{"tlswatch_watch_up", "w_down", nil, 0, true},
		{"tlswatch_watch_up", "w_new", nil, 0, false},
		{"tlswatch_watch_status", "w_up", []string{"status", "critical"}, 1, true},
		{"tlswatch_watch_status", "w_up", []string{"status", "ok"}, 0, true},
		{"tlswatch_watch_status", "w_down", []string{"status", "down"}, 1, true},
		{"tlswatch_probe_success", "w_up", nil, 1, true},
		{"tlswatch_probe_success", "w_down", nil, 0, true},
		{"tlswatch_probe_duration_seconds", "w_up", nil, 0.25, true},
		{"tlswatch_watch_consecutive_failures", "w_down", nil, 3, true},
		{"tlswatch_cert_expiry_stage_days", "w_up", nil, 7, true},
		{"tlswatch_cert_expiry_stage_days", "w_down", nil, 0, false},
		{"tlswatch_cert_expiry_stage_days", "w_pct", nil, 9, true}, // 10% of 90 days
		{"tlswatch_cert_not_before_timestamp_seconds", "w_up", nil, float64(notBefore.Unix()), true},
		{"tlswatch_chain_earliest_not_after_timestamp_seconds", "w_up", nil, float64(interExpiry.Unix()), true},
		{"tlswatch_chain_cert_not_after_timestamp_seconds", "w_up", []string{"position", "1", "subject", "CN=Inter"}, float64(interExpiry.Unix()), true},
		{"tlswatch_chain_cert_not_before_timestamp_seconds", "w_up", []string{"position", "0", "subject", "CN=a.example"}, float64(notBefore.Unix()), true},
		{"tlswatch_chain_earliest_not_after_timestamp_seconds", "w_down", nil, 0, false},
		{"tlswatch_mcp_latency_seconds", "w_mcp", []string{"quantile", "0.5"}, 0.012, true},
		{"tlswatch_mcp_latency_seconds", "w_mcp", []string{"quantile", "0.95"}, 0.08, true},
		{"tlswatch_mcp_uptime_ratio", "w_mcp", nil, 0.75, true},
		{"tlswatch_mcp_tools", "w_mcp", nil, 7, true},
		{"tlswatch_mcp_info", "w_mcp", []string{"protocol_version", "2025-11-25", "server", "srv", "server_version", "1.2", "tools_hash", "sha256:ab"}, 1, true},
		{"tlswatch_mcp_uptime_ratio", "w_up", nil, 0, false},
		{"tlswatch_mcp_tools", "w_up", nil, 0, false},
		{"tlswatch_probe_tls_duration_seconds", "w_up", nil, 0.04, true},
		{"tlswatch_probe_tls_duration_seconds", "w_down", nil, 0, false},
		{"tlswatch_watch_uptime_ratio", "w_up", []string{"window", "24h"}, 0.9583, true},
		{"tlswatch_watch_uptime_ratio", "w_up", []string{"window", "30d"}, 0.999, true},
		{"tlswatch_watch_uptime_ratio", "w_new", nil, 0, false},
		{"tlswatch_tls_handshake_duration_seconds", "w_up", []string{"window", "24h", "quantile", "0.95"}, 0.03, true},
		{"tlswatch_tls_handshake_duration_seconds", "w_up", []string{"window", "30d", "quantile", "0.5"}, 0.011, true},
		{"tlswatch_tls_handshake_duration_seconds", "w_down", nil, 0, false},
	}
	for _, c := range checks {
		got, ok := get(c.name, c.id, c.extra...)
		if ok != c.present || (ok && got != c.want) {
			t.Errorf("%s{id=%s %v} = %v (present %v), want %v (present %v)", c.name, c.id, c.extra, got, ok, c.want, c.present)
		}
	}
	if f := fams["tlswatch_watches"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() != 5 {
		t.Errorf("tlswatch_watches missing or wrong")
	}
	for name := range fams {
		if strings.HasPrefix(name, "tlswatch_") && !model.LegacyValidation.IsValidMetricName(name) {
			t.Errorf("metric name %q is not a valid Prometheus name", name)
		}
	}
}

func ptr[T any](v T) *T { return &v }

type failingList struct{}

func (failingList) List(context.Context, string, int) (watch.WatchPage, error) {
	return watch.WatchPage{}, errors.New("database gone")
}

// A scrape that cannot read the watches says so, and still serves the
// process metrics; a gzip scrape is the same exposition compressed.
func TestScrapeErrorAndGzip(t *testing.T) {
	srv := httptest.NewServer(Handler(failingList{}, nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if f := fams["tlswatch_scrape_error"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() != 1 || fams["tlswatch_watches"] != nil || fams["go_goroutines"] == nil {
		t.Errorf("failed scrape: %v", fams["tlswatch_scrape_error"])
	}
	gz := httptest.NewServer(Handler(staticList{{ID: "w_a", Target: probe.TargetInfo{Host: "a.example", Port: 443}, State: watch.StateUp}}, nil))
	defer gz.Close()
	req, _ := http.NewRequest("GET", gz.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = gz.Client().Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser = expfmt.NewTextParser(model.LegacyValidation)
	fams, err = parser.TextToMetricFamilies(zr)
	if err != nil || fams["tlswatch_watch_up"] == nil || fams["tlswatch_watches"].GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("gzip scrape: %v", err)
	}
}

// genList makes n watches on the fly, a page at a time, as the watch
// service would serve them (a Report each).
type genList int

func (g genList) List(_ context.Context, cursor string, limit int) (watch.WatchPage, error) {
	start, _ := strconv.Atoi(cursor)
	end := min(start+limit, int(g))
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	p := watch.WatchPage{Watches: make([]watch.Watch, 0, end-start)}
	for i := start; i < end; i++ {
		p.Watches = append(p.Watches, watch.Watch{ID: fmt.Sprintf("w_%016x", i), State: watch.StateUp, LastCheckedAt: &now,
			Target: probe.TargetInfo{Host: fmt.Sprintf("host%06d.example.com", i), Port: 443},
			LastReport: &probe.Report{Status: probe.StatusOK, Reachable: true, Trusted: true, ExpiryStage: "none",
				Leaf: &probe.CertInfo{NotAfter: now.AddDate(0, 0, 60), DaysRemaining: 60}, Findings: []probe.Finding{}}})
	}
	if end < int(g) {
		p.NextCursor = strconv.Itoa(end)
	}
	return p, nil
}

// discard is a ResponseWriter that counts what it is given.
type discard struct {
	h http.Header
	n int64
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }

// A scrape of 100,000 watches: what it allocates (B/op) and the heap it
// holds at its peak, against the exposition it writes.
//
//	go test -run '^$' -bench Scrape100k -benchtime 5x -count 3 ./metrics/
func BenchmarkScrape100k(b *testing.B) {
	h := Handler(genList(100_000), nil)
	req := httptest.NewRequest("GET", "/metrics", nil)
	var size int64
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // sample the heap while scrapes run
		defer close(done)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		d := &discard{h: http.Header{}}
		h.ServeHTTP(d, req)
		size = d.n
	}
	close(stop)
	<-done
	b.ReportMetric(float64(size)/(1<<20), "response-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
