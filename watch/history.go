package watch

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// HistoryQuery asks for part of one watch's history: get_history's
// arguments.
type HistoryQuery struct {
	ID string `json:"id"`
	// Since and Until bound the range [Since, Until): an RFC 3339 time, or
	// a period back from now ("36h", "30d", "2w"). Empty Since: as far
	// back as kept; empty Until: now.
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
	// Resolution is "raw" (a sample per probe, the default), "hour" or
	// "day" (aggregates).
	Resolution string `json:"resolution,omitempty"`
	// Limit keeps the newest Limit points. 0 means DefaultHistoryLimit
	// without Since, MaxHistoryLimit with it.
	Limit int `json:"limit,omitempty"`
	// Checkpoints adds the day's first full Report of each UTC day in the
	// range to Reports.
	Checkpoints bool `json:"checkpoints,omitempty"`
}

// History is get_history's answer: the samples (raw) or aggregates (hour,
// day) of the range, newest first; the summary of the whole range; and the
// Reports stored at each change within it, with the one in force at its
// start ("when did this start"), newest first.
type History struct {
	ID         string     `json:"id"`
	Resolution string     `json:"resolution"`
	Since      *time.Time `json:"since,omitempty"`
	Until      time.Time  `json:"until"`
	// Samples are one per probe (resolution raw).
	Samples []store.Sample `json:"samples,omitempty"`
	// Aggregates are one per UTC hour or day with probes.
	Aggregates []store.Aggregate `json:"aggregates,omitempty"`
	// Summary merges the range: probes, failures, uptime, latency.
	Summary store.Aggregate `json:"summary"`
	// Reports are the newest probe results of the range as full Reports,
	// newest first, as get_history always answered (resolution raw; at
	// most the limit given, else DefaultHistoryLimit, and at most
	// MaxProbeReports). Each is the Report stored at the change its
	// sample names, at the probe's own time, status and latencies.
	Reports []probe.Report `json:"reports"`
	// Changes are the full Reports stored at each change in the range and
	// the one in force at its start (see StoredReport): a sample's report
	// field names one of them. With checkpoints, also each day's first.
	Changes []StoredReport `json:"changes"`
	// StateSince is when the watch's current state (its last change)
	// began.
	StateSince *time.Time `json:"state_since,omitempty"`
	// More is set when the limit cut the points (or too many Reports).
	More bool `json:"more,omitempty"`
}

// StoredReport is a Report that history kept in full (its checked_at is
// when it was seen), why it was kept, and the reference samples use.
type StoredReport struct {
	// Kind is "change" (something meaningful differed from the Report
	// before: status, findings, certificate, chain, TLS version, stage)
	// or "checkpoint" (the first probe of a UTC day, when asked for).
	Kind   string       `json:"kind"`
	Ref    string       `json:"ref"`
	Report probe.Report `json:"report"`
}

// Resolutions of HistoryQuery.
const (
	ResolutionRaw  = string(store.ResolutionRaw)
	ResolutionHour = string(store.ResolutionHour)
	ResolutionDay  = string(store.ResolutionDay)
)

// maxHistoryReports bounds History.Changes (a host flapping every second
// stores a change each time).
const maxHistoryReports = 1000

// MaxProbeReports bounds History.Reports: full Reports are a few KB each.
const MaxProbeReports = 500

// resolve validates q against now and turns it into the store's query.
func (q HistoryQuery) resolve(now time.Time) (string, store.HistoryQuery, error) {
	id, err := required("id", q.ID)
	if err != nil {
		return "", store.HistoryQuery{}, err
	}
	sq := store.HistoryQuery{MaxReports: maxHistoryReports, Checkpoints: q.Checkpoints}
	switch r := strings.ToLower(strings.TrimSpace(q.Resolution)); r {
	case "", ResolutionRaw, ResolutionHour, ResolutionDay:
		sq.Resolution = store.Resolution(r)
		if r == "" {
			sq.Resolution = store.ResolutionRaw
		}
	default:
		return "", sq, &probe.FieldError{Field: "resolution", Reason: fmt.Sprintf("%q: want raw, hour or day", q.Resolution)}
	}
	if sq.Since, err = when("since", q.Since, now); err != nil {
		return "", sq, err
	}
	if sq.Until, err = when("until", q.Until, now); err != nil {
		return "", sq, err
	}
	end := sq.Until // zero Until is unbounded: a probe at this very instant counts
	if end.IsZero() {
		end = now
	}
	if !sq.Since.IsZero() && !sq.Since.Before(end) {
		return "", sq, &probe.FieldError{Field: "until", Reason: "must be after since"}
	}
	def := DefaultHistoryLimit
	if !sq.Since.IsZero() {
		def = MaxHistoryLimit
	}
	if sq.Limit, err = limit("limit", q.Limit, def, MaxHistoryLimit); err != nil {
		return "", sq, err
	}
	return id, sq, nil
}

// when reads a time of a history range: RFC 3339, or a period back from
// now (a Go duration, or whole days "30d" or weeks "2w").
func when(field, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(s)
	if n := len(s); err != nil && n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
		unit := 24 * time.Hour
		if s[n-1] == 'w' {
			unit *= 7
		}
		k, perr := strconv.Atoi(s[:n-1])
		if perr == nil && k >= 0 && k <= maxHistoryDays {
			d, err = time.Duration(k)*unit, nil
		}
	}
	if err != nil || d <= 0 || d > maxHistoryDays*24*time.Hour {
		return time.Time{}, &probe.FieldError{Field: field, Reason: fmt.Sprintf("%q: want an RFC 3339 time or a period back from now (36h, 30d, 2w) up to %d days", s, maxHistoryDays)}
	}
	return now.Add(-d).UTC(), nil
}

// maxHistoryDays bounds a period back from now (retention keeps at most a
// few years; this only catches nonsense).
const maxHistoryDays = 100 * 366

// History answers get_history (see Service).
func (e *Engine) History(_ context.Context, q HistoryQuery) (History, error) {
	if err := e.open(); err != nil {
		return History{}, err
	}
	now := e.clock.Now()
	id, sq, err := q.resolve(now)
	if err != nil {
		return History{}, err
	}
	sq.Now = now
	page, err := e.st.Query(id, sq)
	if err != nil {
		return History{}, notFound(id, err)
	}
	h := historyOf(id, sq, page, q.reportsWanted())
	if h.Until.IsZero() {
		h.Until = now.UTC()
	}
	return h, nil
}

// reportsWanted is how many probe results History.Reports carries.
func (q HistoryQuery) reportsWanted() int {
	n := q.Limit
	if n <= 0 {
		n = DefaultHistoryLimit
	}
	return min(n, MaxProbeReports)
}

func historyOf(id string, sq store.HistoryQuery, page store.HistoryPage, reports int) History {
	h := History{ID: id, Resolution: string(sq.Resolution), Until: sq.Until.UTC(), Samples: page.Samples,
		Aggregates: page.Aggregates, Summary: page.Summary, More: page.More, Changes: make([]StoredReport, len(page.Reports))}
	if !sq.Since.IsZero() {
		s := sq.Since.UTC()
		h.Since = &s
	}
	for i, sr := range page.Reports {
		h.Changes[i] = StoredReport{Kind: sr.Kind, Ref: sr.Ref, Report: sr.Report}
	}
	h.Reports = probeReports(page.Samples, h.Changes, reports)
	if !page.StateSince.IsZero() {
		s := page.StateSince
		h.StateSince = &s
	}
	return h
}

// probeReports rebuilds the newest n probe results from their samples and
// the Reports stored at the changes they name: between two changes a
// probe differs from the change's Report only in its time, latencies and
// the days left, which follow from its time. A sample whose Report was
// not kept (past the changes' bound) is left out.
func probeReports(samples []store.Sample, changes []StoredReport, n int) []probe.Report {
	byRef := make(map[string]*probe.Report, len(changes))
	for i := range changes {
		byRef[changes[i].Ref] = &changes[i].Report
	}
	out := []probe.Report{}
	for _, s := range samples {
		if len(out) == n {
			break
		}
		base, ok := byRef[s.Report]
		if !ok {
			continue
		}
		r := *base
		r.CheckedAt, r.Status = s.At, s.Status
		r.Timing = probe.Timing{DNS: s.DNSMS, Connect: s.ConnectMS, Handshake: s.HandshakeMS,
			Total: s.DNSMS + s.ConnectMS + s.HandshakeMS}
		if r.Leaf != nil {
			leaf := *r.Leaf
			leaf.DaysRemaining = probe.DaysRemaining(leaf.NotAfter, s.At)
			r.Leaf = &leaf
		}
		out = append(out, r)
	}
	return out
}
