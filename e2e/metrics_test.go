package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

var metricsURLRE = regexp.MustCompile(`url=(http://\S+/metrics)`)

// TestPrometheusMetrics: serve on stdio with --metrics on a free
// loopback port; after adding an expiring, a healthy and a refused watch,
// /metrics parses with the Prometheus text parser and its values match
// list_watches: days remaining, up, and the status state set.
func TestPrometheusMetrics(t *testing.T) {
	l := newLab(t)
	stderr := &syncBuffer{}
	tr := transport.NewStdioWithOptions(binary, nil, l.serveArgs("--metrics", "127.0.0.1:0"), transport.WithCommandStderrWriter(stderr))
	c := client.NewClient(tr, client.WithProtocolVersion(legacyVersion))
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	initialize(t, c)

	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := metricsURLRE.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatal("serve --metrics did not log its URL")
	}

	addWatch(t, c, l) // 5 days: status critical, stage 7d
	if res := call(t, c, "watch_endpoint", map[string]any{"target": l.valid, "ip": l.validIP, "schedule": "@every 1h"}); res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	refused := testlab.RefusedAddr(t)
	if res := call(t, c, "watch_endpoint", map[string]any{"target": hostTarget(refused), "ip": "127.0.0.1", "schedule": "@every 1h", "failure_threshold": 1}); res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}

	// The 5-day watch probes every second; compare a list and a scrape
	// taken close together, retrying if a probe slipped in between.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ws := structured(t, call(t, c, "list_watches", map[string]any{}))["watches"].([]any)
		families := scrape(t, url)
		if lastErr = compareMetrics(ws, families); lastErr == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Error(lastErr)
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	return families
}

// gauge returns the value of family's sample whose labels include want.
func gauge(fams map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	f := fams[family]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		if g := m.GetGauge(); g != nil {
			return g.GetValue(), true
		}
		if u := m.GetUntyped(); u != nil {
			return u.GetValue(), true
		}
	}
	return 0, false
}

// compareMetrics checks the scrape against list_watches.
func compareMetrics(ws []any, fams map[string]*dto.MetricFamily) error {
	var errs []string
	fail := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if n, ok := gauge(fams, "tlswatch_watches", nil); !ok || int(n) != len(ws) {
		fail("tlswatch_watches = %v (present %v), want %d", n, ok, len(ws))
	}
	states := map[string]bool{}
	for _, x := range ws {
		w := x.(map[string]any)
		id := w["id"].(string)
		states[w["state"].(string)] = true
		lbl := map[string]string{"id": id}
		rep, _ := w["last_report"].(map[string]any)

		wantUp := map[string]float64{"up": 1, "down": 0}[w["state"].(string)]
		if up, ok := gauge(fams, "tlswatch_watch_up", lbl); !ok || up != wantUp {
			fail("%s: tlswatch_watch_up = %v (present %v), state %v", id, up, ok, w["state"])
		}
		status, _ := rep["status"].(string)
		for _, s := range []string{"ok", "warning", "critical", "down"} {
			want := 0.0
			if s == status {
				want = 1
			}
			if v, ok := gauge(fams, "tlswatch_watch_status", map[string]string{"id": id, "status": s}); !ok || v != want {
				fail("%s: tlswatch_watch_status{status=%q} = %v (present %v), latest status %q", id, s, v, ok, status)
			}
		}
		leaf, _ := rep["leaf"].(map[string]any)
		if leaf == nil {
			if _, ok := gauge(fams, "tlswatch_cert_days_remaining", lbl); ok {
				fail("%s: tlswatch_cert_days_remaining present without a certificate", id)
			}
			continue
		}
		if days, ok := gauge(fams, "tlswatch_cert_days_remaining", lbl); !ok || days != leaf["days_remaining"].(float64) {
			fail("%s: tlswatch_cert_days_remaining = %v (present %v), list_watches says %v", id, days, ok, leaf["days_remaining"])
		}
		na, _ := time.Parse(time.RFC3339, leaf["not_after"].(string))
		if v, ok := gauge(fams, "tlswatch_cert_not_after_timestamp_seconds", lbl); !ok || math.Abs(v-float64(na.Unix())) > 1 {
			fail("%s: tlswatch_cert_not_after_timestamp_seconds = %v (present %v), not_after %v", id, v, ok, na)
		}
		success := 0.0
		if rep["reachable"] == true && rep["trusted"] == true {
			success = 1
		}
		if v, ok := gauge(fams, "tlswatch_probe_success", lbl); !ok || v != success {
			fail("%s: tlswatch_probe_success = %v (present %v), want %v", id, v, ok, success)
		}
	}
	if !states["up"] || !states["down"] {
		fail("want an up and a down watch among %v", states)
	}
	if len(errs) > 0 {
		return fmt.Errorf("/metrics differs from list_watches:\n%s", strings.Join(errs, "\n"))
	}
	return nil
}
