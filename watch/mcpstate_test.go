package watch

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// mcpRep is a healthy TLS Report whose MCP level listed tools (name:digest
// pairs, in any order, as mcpcheck's hash ignores it), or answered not_mcp
// when tools is nil.
func mcpRep(at time.Time, latency float64, tools ...string) *probe.Report {
	r := leafRep(at, probe.StatusOK, "A", now0.Add(200*24*time.Hour))
	if tools == nil {
		r.Findings = []probe.Finding{probe.NewFinding(probe.CodeNotMCP, "HTTP 404")}
		r.Status = probe.StatusOf(*r)
		return r
	}
	m := &probe.MCPInfo{ProtocolVersion: "2025-11-25", Server: probe.MCPServer{Name: "s"}, LatencyMS: latency,
		ToolCount: len(tools), ToolsHash: "sha256:" + strings.Join(slices.Sorted(slices.Values(tools)), ",")}
	for _, t := range slices.Sorted(slices.Values(tools)) {
		name, digest, _ := strings.Cut(t, ":")
		m.Tools = append(m.Tools, probe.MCPTool{Name: name, Digest: digest})
	}
	r.MCP = m
	return r
}

// authRep: TLS fine, the MCP endpoint answers 401 (an info finding).
func authRep(at time.Time) *probe.Report {
	r := leafRep(at, probe.StatusOK, "A", now0.Add(200*24*time.Hour))
	r.Findings = []probe.Finding{probe.NewFinding(probe.CodeMCPAuthRequired, "HTTP 401")}
	return r
}

// The MCP level of the state machine: the first list is the baseline, a
// changed one is an mcp_tools_changed event and finding (without a second
// event for the status it raised), an MCP failure counts toward down even
// though TLS is fine, and a list seen again after failures compares with
// the last one seen.
func TestStateMCPLevel(t *testing.T) {
	m := newMachine()
	m.rec.MCP = true
	steps := []struct {
		name  string
		rep   func(at time.Time) *probe.Report
		state string
		evs   string
		code  bool // the Report carries mcp_tools_changed
	}{
		{"baseline", func(at time.Time) *probe.Report { return mcpRep(at, 10, "a:1", "b:2") }, StateUp, "[status_changed/info]", false},
		{"same list", func(at time.Time) *probe.Report { return mcpRep(at, 12, "b:2", "a:1") }, StateUp, "[]", false},
		{"changed", func(at time.Time) *probe.Report { return mcpRep(at, 11, "a:9", "c:3") }, StateUp, "[mcp_tools_changed/warning]", true},
		{"same again", func(at time.Time) *probe.Report { return mcpRep(at, 10, "a:9", "c:3") }, StateUp, "[status_changed/info]", false},
		{"not MCP 1", func(at time.Time) *probe.Report { return mcpRep(at, 0) }, StateUp, "[status_changed/warning]", false},
		{"not MCP 2", func(at time.Time) *probe.Report { return mcpRep(at, 0) }, StateUp, "[]", false},
		{"not MCP 3", func(at time.Time) *probe.Report { return mcpRep(at, 0) }, StateDown, "[status_changed/critical]", false},
		{"back, changed", func(at time.Time) *probe.Report { return mcpRep(at, 30, "c:3") }, StateUp, "[status_changed/warning mcp_tools_changed/warning]", true},
		{"settled", func(at time.Time) *probe.Report { return mcpRep(at, 30, "c:3") }, StateUp, "[status_changed/info]", false},
		// A 401 leaves the TLS status ok; the failure is announced anyway.
		{"401", authRep, StateUp, "[status_changed/warning]", false},
	}
	for _, s := range steps {
		rep := s.rep(m.at.Add(time.Hour))
		evs := m.step(rep)
		hasCode := strings.Contains(fmt.Sprint(rep.Findings), probe.CodeMCPToolsChanged)
		if m.rec.State != s.state || fmt.Sprint(evs) != s.evs || hasCode != s.code {
			t.Fatalf("%s: state %s events %v finding %v, want %s %s %v", s.name, m.rec.State, evs, hasCode, s.state, s.evs, s.code)
		}
	}
	if got := m.rec.MCPInfo; got == nil || got.ToolsHash != "sha256:c:3" || got.Tools != nil || len(m.rec.MCPTools) != 1 {
		t.Errorf("record mcp %+v, tools %v", got, m.rec.MCPTools)
	}
	if m.rec.ConsecutiveFailures != 1 || m.rec.LastStatus != string(probe.StatusOK) {
		t.Errorf("after the 401: %d failures, status %s", m.rec.ConsecutiveFailures, m.rec.LastStatus)
	}
	if n := len(m.rec.MCPRecent); n != len(steps) {
		t.Errorf("recent window holds %d probes, want %d", n, len(steps))
	}
	// A TLS-only watch never looks at the MCP level.
	tls := newMachine()
	tls.step(mcpRep(now0, 0))
	if tls.rec.State != StateUp || tls.rec.MCPRecent != nil || tls.rec.MCPInfo != nil {
		t.Errorf("TLS-only watch: %+v", tls.rec)
	}
}

// The event says exactly what changed.
func TestStateMCPToolsChange(t *testing.T) {
	m := newMachine()
	m.rec.MCP = true
	m.step(mcpRep(now0, 1, "keep:1", "gone:2", "edit:3"))
	out := evaluate(m.rec, mcpRep(now0.Add(time.Hour), 1, "keep:1", "edit:4", "new:5"), now0.Add(time.Hour), func(string) (store.Alert, bool) { return store.Alert{}, false })
	if len(out.events) != 1 || out.events[0].Tools == nil {
		t.Fatalf("events %+v", out.events)
	}
	ev := out.events[0]
	if got := *ev.Tools; fmt.Sprint(got.Added, got.Removed, got.Changed) != "[new] [gone] [edit]" ||
		!strings.Contains(ev.Message, "added new; removed gone; changed edit") {
		t.Errorf("change %+v: %q", got, ev.Message)
	}
}

// The recent window keeps the newest MCPRecentKeep probes; uptime and the
// nearest-rank latency percentiles come from it.
func TestMCPStats(t *testing.T) {
	var w []store.RecentProbe
	for i := range MCPRecentKeep + 20 {
		w = appendRecent(w, store.RecentProbe{At: now0.Add(time.Duration(i) * time.Minute), OK: i%10 != 0, LatencyMS: float64(i)})
	}
	if len(w) != MCPRecentKeep || !w[0].At.Equal(now0.Add(20*time.Minute)) {
		t.Fatalf("window of %d from %s", len(w), w[0].At)
	}
	s := mcpStats(w)
	// Probes 20..119; 20, 30, ..., 110 failed (10 of 100).
	if s.Probes != 100 || s.Uptime != 0.9 || !s.Since.Equal(now0.Add(20*time.Minute)) {
		t.Errorf("stats %+v", s)
	}
	// The 90 successful latencies are 21..119 without the tens: the 45th
	// (ceil 0.5*90) is 69 and the 86th (ceil 0.95*90) is 115.
	if *s.LatencyMSP50 != 69 || *s.LatencyMSP95 != 115 {
		t.Errorf("p50 %v p95 %v", *s.LatencyMSP50, *s.LatencyMSP95)
	}
	for _, c := range []struct {
		name string
		w    []store.RecentProbe
		want string
	}{
		{"none", nil, "<nil>"},
		{"all failed", []store.RecentProbe{{At: now0}, {At: now0}}, "2 0 <nil> <nil>"},
		{"one", []store.RecentProbe{{At: now0, OK: true, LatencyMS: 7}}, "1 1 7 7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mcpStats(c.w)
			got := "<nil>"
			if s != nil {
				got = fmt.Sprint(s.Probes, " ", s.Uptime, " ", deref(s.LatencyMSP50), " ", deref(s.LatencyMSP95))
			}
			if got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func deref(p *float64) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}
