package store

import (
	"sort"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// A store that keeps a watch's newest samples but no aggregates (a
// cluster's etcd keyspace keeps a few hundred probes per watch) answers a
// HistoryQuery and the recent figures from those samples with these. They
// use the aggregates' sketch, so the figures are those this store would
// give over the same probes (counts exact, latencies within
// LatencyErrorBound); what they cannot give is anything older than the
// samples kept.

// ReportOf returns the Report of samples[i], the first probe of a change
// (a sample naming another Report than the one before); false when its
// body is no longer kept.
type ReportOf func(i int) (probe.Report, bool)

// PageFromSamples answers q from samples, oldest first, each naming in
// Report the content it matched: a sample naming another Report than the
// one before starts a change. It selects as Query does: samples by their
// time, aggregates (and the summary's hours) by their start, so both stores
// give the same answer over the same probes. q.Now and q.Checkpoints are
// ignored.
func PageFromSamples(samples []Sample, q HistoryQuery, reportOf ReportOf) HistoryPage {
	if q.MaxReports <= 0 {
		q.MaxReports = 100
	}
	since, until := msOrMin(q.Since), msOrMax(q.Until)
	var page HistoryPage
	from := since // the start of the points returned
	switch q.Resolution {
	case ResolutionHour, ResolutionDay:
		page.Aggregates, page.More = aggregatesOf(samples, q.Resolution == ResolutionDay, since, until, q.Limit)
		if n := len(page.Aggregates); page.More {
			from = page.Aggregates[n-1].Start.UnixMilli()
		}
	default:
		lo, hi := indexAt(samples, since), indexAt(samples, until)
		if q.Limit > 0 && hi-lo > q.Limit {
			lo, page.More = hi-q.Limit, true
			from = samples[lo].At.UnixMilli()
		}
		page.Samples = make([]Sample, 0, hi-lo)
		for i := hi - 1; i >= lo; i-- {
			page.Samples = append(page.Samples, samples[i])
		}
	}
	var total agg
	for i := range samples {
		if h := floorDiv(samples[i].At.UnixMilli(), msPerHour) * msPerHour; h >= from && h < until {
			addSample(&total, &samples[i])
		}
	}
	page.Summary = total.summary()
	if from > -1<<61 {
		page.Summary.Start = time.UnixMilli(from).UTC()
	}
	more := false
	page.Reports, more = changesOf(samples, from, indexAt(samples, until), q.MaxReports, reportOf)
	page.More = page.More || more
	if n := len(samples); n > 0 {
		page.StateSince = samples[changeStart(samples, n-1)].At
	}
	return page
}

// indexAt is the first sample at or after ms.
func indexAt(samples []Sample, ms int64) int {
	return sort.Search(len(samples), func(i int) bool { return samples[i].At.UnixMilli() >= ms })
}

// changeStart is the first sample of the change samples[j] belongs to.
func changeStart(samples []Sample, j int) int {
	for j > 0 && samples[j-1].Report == samples[j].Report {
		j--
	}
	return j
}

// changesOf lists, newest first, the changes that begin in [from, the
// sample end) and the one in force at from.
func changesOf(samples []Sample, from int64, end, maxN int, reportOf ReportOf) ([]StoredReport, bool) {
	var out []StoredReport
	for j := end - 1; j >= 0; {
		s := changeStart(samples, j)
		if len(out) == maxN {
			return out, true
		}
		if rep, ok := reportOf(s); ok {
			out = append(out, StoredReport{At: samples[s].At, Kind: kindNames[kindChange], Ref: samples[s].Report, Report: rep})
		}
		if samples[s].At.UnixMilli() < from {
			break // the change in force at from
		}
		j = s - 1
	}
	return out, false
}

// aggregatesOf groups samples (oldest first) by UTC hour or day, newest
// first, the periods that start in [since, until), keeping limit (0: all).
func aggregatesOf(samples []Sample, daily bool, since, until int64, limit int) (out []Aggregate, more bool) {
	size := msPerHour
	if daily {
		size = msPerDay
	}
	for end := len(samples); end > 0; {
		k := floorDiv(samples[end-1].At.UnixMilli(), size)
		start := end - 1
		for start > 0 && floorDiv(samples[start-1].At.UnixMilli(), size) == k {
			start--
		}
		if k*size < since {
			break
		}
		if k*size < until {
			if limit > 0 && len(out) == limit {
				return out, true
			}
			var a agg
			for i := start; i < end; i++ {
				addSample(&a, &samples[i])
			}
			s := a.summary()
			s.Start = time.UnixMilli(k * size).UTC()
			out = append(out, s)
		}
		end = start
	}
	return out, false
}

func addSample(a *agg, s *Sample) { a.add(statusCode(s.Status), usOf(s.HandshakeMS)) }

// RecentFromSamples is Recent at now over samples (any order): the same
// windows as RecentOf, whole UTC hours and days.
func RecentFromSamples(samples []Sample, now time.Time) Recent {
	nowMS := now.UnixMilli()
	hour, today := floorDiv(nowMS, msPerHour), floorDiv(nowMS, msPerDay)
	hourFrom, hourEnd := (hour-23)*msPerHour, (hour+1)*msPerHour
	monthFrom, monthEnd := (today-29)*msPerDay, (today+1)*msPerDay
	var day, month agg
	for i := range samples {
		at := samples[i].At.UnixMilli()
		if at >= hourFrom && at < hourEnd {
			addSample(&day, &samples[i])
		}
		if at >= monthFrom && at < monthEnd {
			addSample(&month, &samples[i])
		}
	}
	r := Recent{Day: day.summary(), Month: month.summary()}
	r.Day.Start, r.Month.Start = time.UnixMilli(hourFrom).UTC(), time.UnixMilli(monthFrom).UTC()
	return r
}

// Replay returns the newest n probes of a watch as Reports, newest first:
// each the Report of the change it matched, with the probe's time, status
// and latencies (what moves a watch's history to a store of samples).
func (db *DB) Replay(id string, n int) ([]probe.Report, error) {
	page, err := db.Query(id, HistoryQuery{Limit: n, MaxReports: n + 1})
	if err != nil {
		return nil, err
	}
	byRef := make(map[string]*probe.Report, len(page.Reports))
	for i := range page.Reports {
		byRef[page.Reports[i].Ref] = &page.Reports[i].Report
	}
	out := make([]probe.Report, 0, len(page.Samples))
	for _, s := range page.Samples {
		rep := probe.Report{Status: s.Status, Findings: []probe.Finding{}, ExpiryStage: probe.StageNone}
		if c := byRef[s.Report]; c != nil {
			rep = *c
		}
		rep.CheckedAt, rep.Status = s.At, s.Status
		rep.Timing = probe.Timing{DNS: s.DNSMS, Connect: s.ConnectMS, Handshake: s.HandshakeMS, Total: s.DNSMS + s.ConnectMS + s.HandshakeMS}
		out = append(out, rep)
	}
	return out, nil
}
