package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

// clock is a settable clock for the store's retention.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openHistDB(t testing.TB, ret Retention) (*DB, *clock) {
	t.Helper()
	c := &clock{t: t0}
	db, err := Open(filepath.Join(t.TempDir(), "tlswatch.db"), Options{Retention: ret, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, c
}

func addWatch(t testing.TB, db *DB, id string) {
	t.Helper()
	if _, err := db.Apply([]Update{{Record: rec(id, id+".test"), Create: true}}); err != nil {
		t.Fatal(err)
	}
}

func record(t testing.TB, db *DB, id string, reps ...*probe.Report) {
	t.Helper()
	ups := make([]Update, len(reps))
	for i, r := range reps {
		ups[i] = Update{Record: rec(id, id+".test"), Report: r}
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
}

// fullReport is a Report with the parts history compares: a leaf, a chain,
// TLS, findings whose messages change daily, and timing.
func fullReport(at time.Time, status probe.Status, fp string, notAfter time.Time, hsMS float64, codes ...string) *probe.Report {
	days := probe.DaysRemaining(notAfter, at)
	r := &probe.Report{
		Target:    probe.TargetInfo{Host: "a.test", Port: 443, SNI: "a.test"},
		CheckedAt: at, Status: status, Reachable: status != probe.StatusDown, Trusted: status != probe.StatusDown,
		ExpiryStage: "none", Findings: []probe.Finding{},
		TLS: &probe.TLSInfo{Version: "TLS 1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", ALPN: "h2"},
		Leaf: &probe.CertInfo{Subject: "CN=a.test", Issuer: "CN=Lab CA", SANs: []string{"a.test"},
			NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter, DaysRemaining: days,
			Serial: "0" + fp, SHA256: fp, Key: "ECDSA P-256", SignatureAlgorithm: "ECDSA-SHA256"},
		Chain:  &probe.ChainInfo{Served: 2, Complete: true, VerifiedPath: []string{"CN=a.test", "CN=Lab CA", "CN=Lab Root"}},
		Timing: probe.Timing{DNS: 0.21, Connect: 0.52, Handshake: hsMS, Total: 0.73 + hsMS},
	}
	for _, c := range codes {
		r.Findings = append(r.Findings, probe.Finding{Code: c, Severity: probe.SeverityWarning,
			Message: fmt.Sprintf("%s: the certificate expires in %d days", c, days)})
	}
	return r
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Changed Reports are kept at every change, exactly as probed, and only
// then (plus the day's checkpoint); equal contents share one body.
func TestChangesKeptAtEveryChange(t *testing.T) {
	db, clk := openHistDB(t, Retention{})
	addWatch(t, db, "w_1")
	na := t0.Add(60 * 24 * time.Hour)
	nb := t0.Add(90 * 24 * time.Hour)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	a := func(m int) *probe.Report { return fullReport(at(m), "ok", "fpA", na, 10+float64(m)/100) }
	steps := []struct {
		name   string
		rep    *probe.Report
		change bool
	}{
		{"first probe", a(0), true},
		{"same", a(1), false},
		{"same, other latency", a(2), false},
		{"finding added", fullReport(at(3), "warning", "fpA", na, 9, "weak_key"), true},
		{"same finding, same status", fullReport(at(4), "warning", "fpA", na, 9, "weak_key"), false},
		{"rotated certificate", fullReport(at(5), "ok", "fpB", nb, 9), true},
		{"back to the first certificate", a(6), true},
		{"TLS version", func() *probe.Report { r := a(7); r.TLS.Version = "TLS 1.2"; return r }(), true},
		{"chain", func() *probe.Report { r := a(8); r.Chain.Served = 3; return r }(), true},
		{"stage", func() *probe.Report { r := a(9); r.ExpiryStage = "30d"; return r }(), true},
		{"down", fullReport(at(10), "down", "fpA", na, 0, "connection_refused"), true},
		{"down, other message", func() *probe.Report {
			r := fullReport(at(11), "down", "fpA", na, 0, "connection_refused")
			r.Findings[0].Message = "refused again"
			return r
		}(), false},
		{"up", a(12), true},
	}
	var want []string
	for _, s := range steps {
		record(t, db, "w_1", s.rep)
		if s.change {
			want = append(want, jsonOf(t, s.rep))
		}
	}
	clk.t = at(20)
	page, err := db.Query("w_1", HistoryQuery{Resolution: ResolutionHour})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	refs := map[string]bool{}
	for i := len(page.Reports) - 1; i >= 0; i-- {
		sr := page.Reports[i]
		if sr.Kind != "change" {
			t.Errorf("report at %v is a %s at hour resolution", sr.At, sr.Kind)
		}
		got = append(got, jsonOf(t, sr.Report))
		refs[sr.Ref] = true
	}
	if !slices.Equal(got, want) {
		t.Errorf("stored changes differ: got %d, want %d", len(got), len(want))
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("change %d:\n got %s\nwant %s", i, got[i], want[i])
			}
		}
	}
	// "back to the first certificate" and "up" differ only in checked_at
	// and timing: one body.
	if up, back := page.Reports[0], page.Reports[len(page.Reports)-4]; up.Ref != back.Ref {
		t.Errorf("equal Reports stored twice: %s and %s", up.Ref, back.Ref)
	}
	if n := countKeys(t, db, bBodies); n != len(refs) {
		t.Errorf("%d bodies for %d distinct Reports", n, len(refs))
	}
	if !page.StateSince.Equal(at(12)) {
		t.Errorf("StateSince = %v, want the last change %v", page.StateSince, at(12))
	}
	// Samples name the Report they matched.
	raw, err := db.Query("w_1", HistoryQuery{})
	if err != nil || len(raw.Samples) != len(steps) {
		t.Fatalf("samples: %d, %v", len(raw.Samples), err)
	}
	if s := raw.Samples[len(steps)-2]; s.Report != page.Reports[len(page.Reports)-1].Ref {
		t.Errorf("second probe refers to %s, want the first Report %s", s.Report, page.Reports[len(page.Reports)-1].Ref)
	}
	if s := raw.Samples[1]; s.Status != "down" || s.Report != page.Reports[1].Ref {
		t.Errorf("second down probe = %+v, want status down and the down Report %s", s, page.Reports[1].Ref)
	}
}

func countKeys(t testing.TB, db *DB, bucket []byte) int {
	t.Helper()
	n := 0
	db.bolt.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	return n
}

// The first probe of each UTC day is stored in full, compressed against the
// last change: a checkpoint costs far less than a change.
func TestDailyCheckpoint(t *testing.T) {
	db, clk := openHistDB(t, Retention{})
	addWatch(t, db, "w_1")
	notAfter := t0.Add(20 * 24 * time.Hour)
	start := time.Date(2026, 11, 27, 0, 30, 0, 0, time.UTC)
	var firsts []string
	for h := range 72 {
		at := start.Add(time.Duration(h) * time.Hour)
		rep := fullReport(at, "ok", "fpA", notAfter, 10, "expiring_soon")
		record(t, db, "w_1", rep)
		if h%24 == 0 {
			firsts = append(firsts, jsonOf(t, rep))
		}
	}
	clk.t = start.Add(72 * time.Hour)
	page, err := db.Query("w_1", HistoryQuery{Checkpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	var got, kinds []string
	for i := len(page.Reports) - 1; i >= 0; i-- {
		got = append(got, jsonOf(t, page.Reports[i].Report))
		kinds = append(kinds, page.Reports[i].Kind)
	}
	if want := []string{"change", "checkpoint", "checkpoint"}; !slices.Equal(kinds, want) {
		t.Fatalf("stored kinds %v, want %v", kinds, want)
	}
	if !slices.Equal(got, firsts) {
		t.Errorf("checkpoints are not the day's first Reports:\n got %v\nwant %v", got, firsts)
	}
	sizes := map[bool]int{}
	db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bBodies).ForEach(func(k, v []byte) error {
			base, _ := bodyBase(v)
			sizes[base != (ref{})] = max(sizes[base != (ref{})], len(v))
			return nil
		})
	})
	if sizes[true] == 0 || sizes[true]*3 > sizes[false] {
		t.Errorf("checkpoint body %d bytes, change body %d: want a checkpoint under a third", sizes[true], sizes[false])
	}
}

// Aggregates equal what the raw samples say: counts exactly, latency within
// LatencyErrorBound; a day is the merge of its hours; the summary of a
// range is the merge of everything in it.
func TestAggregatesEqualRaw(t *testing.T) {
	db, clk := openHistDB(t, Retention{})
	addWatch(t, db, "w_1")
	rng := rand.New(rand.NewPCG(11, 12))
	at := time.Date(2026, 11, 20, 22, 17, 0, 0, time.UTC)
	end := at.Add(50 * time.Hour)
	for at.Before(end) {
		var reps []*probe.Report
		for range 50 {
			at = at.Add(time.Duration(1+rng.IntN(300)) * time.Second)
			status := []probe.Status{"ok", "ok", "ok", "ok", "ok", "ok", "warning", "critical", "down", "down"}[rng.IntN(10)]
			hs := 15 * math.Exp(rng.NormFloat64()*0.4)
			if status == "down" && rng.IntN(2) == 0 {
				hs = 0 // not reachable: no handshake
			}
			reps = append(reps, fullReport(at, status, "fpA", t0.Add(60*24*time.Hour), hs))
		}
		record(t, db, "w_1", reps...)
	}
	clk.t = end
	raw, err := db.Query("w_1", HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	exact := func(samples []Sample) (StatusCounts, []float64) {
		var c StatusCounts
		var lat []float64
		for _, s := range samples {
			switch s.Status {
			case "ok":
				c.OK++
			case "warning":
				c.Warning++
			case "critical":
				c.Critical++
			case "down":
				c.Down++
			}
			if s.HandshakeMS > 0 {
				lat = append(lat, s.HandshakeMS)
			}
		}
		slices.Sort(lat)
		return c, lat
	}
	check := func(t *testing.T, a Aggregate, samples []Sample) {
		t.Helper()
		c, lat := exact(samples)
		if a.Statuses != c || a.Probes != len(samples) || a.Failures != c.Down || a.Handshakes != len(lat) {
			t.Errorf("%v: counts %+v, raw says %+v of %d probes, %d handshakes", a.Start, a, c, len(samples), len(lat))
			return
		}
		if want := float64(len(samples)-c.Down) / float64(len(samples)); math.Abs(a.Uptime-want) > 5e-7 {
			t.Errorf("%v: uptime %v, raw says %v", a.Start, a.Uptime, want)
		}
		for _, q := range []struct {
			name      string
			got, want float64
		}{{"p50", a.HandshakeP50MS, exactQuantile(lat, .5)}, {"p95", a.HandshakeP95MS, exactQuantile(lat, .95)}, {"max", a.HandshakeMaxMS, lat[len(lat)-1]}} {
			if !within(q.got, q.want, LatencyErrorBound) {
				t.Errorf("%v: %s %.4f, raw says %.4f", a.Start, q.name, q.got, q.want)
			}
		}
	}
	in := func(from time.Time, d time.Duration) []Sample {
		var out []Sample
		for _, s := range raw.Samples {
			if !s.At.Before(from) && s.At.Before(from.Add(d)) {
				out = append(out, s)
			}
		}
		return out
	}
	for _, res := range []struct {
		r Resolution
		d time.Duration
	}{{ResolutionHour, time.Hour}, {ResolutionDay, 24 * time.Hour}} {
		t.Run(string(res.r), func(t *testing.T) {
			page, err := db.Query("w_1", HistoryQuery{Resolution: res.r})
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, a := range page.Aggregates {
				s := in(a.Start, res.d)
				total += len(s)
				check(t, a, s)
			}
			if total != len(raw.Samples) {
				t.Errorf("aggregates cover %d probes, raw has %d", total, len(raw.Samples))
			}
			check(t, page.Summary, raw.Samples)
		})
	}
	t.Run("range summary", func(t *testing.T) {
		from := time.Date(2026, 11, 21, 5, 0, 0, 0, time.UTC)
		until := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
		page, err := db.Query("w_1", HistoryQuery{Since: from, Until: until, Resolution: ResolutionDay})
		if err != nil {
			t.Fatal(err)
		}
		check(t, page.Summary, in(from, until.Sub(from)))
	})
}

// Retention prunes exactly what is past its age, and reads hide the same
// before the pruner runs.
func TestRetentionPrunesExactly(t *testing.T) {
	ret := Retention{Raw: 7 * day, Hour: 10 * day, Day: 20 * day, Changes: 15 * day}
	db, clk := openHistDB(t, ret)
	addWatch(t, db, "w_1")
	addWatch(t, db, "w_2")
	rng := rand.New(rand.NewPCG(13, 14))
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	type probeAt struct {
		at     time.Time
		status probe.Status
	}
	var probes []probeAt
	status := probe.Status("ok")
	for h := 0; h < 30*24; h++ {
		at := start.Add(time.Duration(h)*time.Hour + time.Duration(rng.IntN(3000))*time.Second)
		if rng.IntN(60) == 0 {
			status = map[probe.Status]probe.Status{"ok": "warning", "warning": "ok"}[status]
		}
		probes = append(probes, probeAt{at, status})
		r := fullReport(at, status, "fpA", start.Add(80*24*time.Hour), 10+rng.Float64())
		record(t, db, "w_1", r)
		record(t, db, "w_2", r)
	}
	clk.t = start.Add(30*24*time.Hour + 7*time.Hour + 13*time.Minute)
	cut := db.cutoffs(clk.t)
	queries := []HistoryQuery{{}, {Resolution: ResolutionHour}, {Resolution: ResolutionDay}}
	var before []string
	for _, q := range queries {
		p, err := db.Query("w_1", q)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, jsonOf(t, p))
	}
	entries := changeEntries(t, db, 1)
	st, err := db.Prune(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune: %+v", st)
	if st.Watches != 2 || st.Batches < 2 || st.Samples == 0 || st.Hours == 0 || st.Reports == 0 {
		t.Errorf("prune stats %+v", st)
	}
	t.Run("reads unchanged by pruning", func(t *testing.T) {
		for i, q := range queries {
			p, err := db.Query("w_1", q)
			if err != nil {
				t.Fatal(err)
			}
			if got := jsonOf(t, p); got != before[i] {
				t.Errorf("%v: answer changed by pruning", q.Resolution)
			}
		}
	})
	t.Run("samples", func(t *testing.T) {
		var want []int64
		for _, p := range probes {
			if p.at.UnixMilli() >= cut.raw {
				want = append(want, p.at.UnixMilli())
			}
		}
		var got []int64
		for _, s := range storedSamples(t, db, 1) {
			got = append(got, s.at)
		}
		if !slices.Equal(got, want) {
			t.Errorf("kept %d samples (%v..), want the %d at or after the cutoff", len(got), got[:1], len(want))
		}
	})
	t.Run("aggregates", func(t *testing.T) {
		wantHours := map[int64]StatusCounts{}
		wantDays := map[int64]int{}
		for _, p := range probes {
			ms := p.at.UnixMilli()
			if h := floorDiv(ms, msPerHour) * msPerHour; h >= cut.hour {
				c := wantHours[h]
				c.OK += b2i(p.status == "ok")
				c.Warning += b2i(p.status == "warning")
				wantHours[h] = c
			}
			if d := floorDiv(ms, msPerDay) * msPerDay; d >= cut.day {
				wantDays[d]++
			}
		}
		gotHours, gotDays := storedAggs(t, db, 1)
		if fmt.Sprint(gotHours) != fmt.Sprint(wantHours) {
			t.Errorf("hours kept: %d, want %d (from %v)", len(gotHours), len(wantHours), time.UnixMilli(cut.hour).UTC())
		}
		if fmt.Sprint(gotDays) != fmt.Sprint(wantDays) {
			t.Errorf("days kept: %v\nwant %v", gotDays, wantDays)
		}
	})
	t.Run("reports", func(t *testing.T) {
		// Kept: what is in force at or after the raw cutoff, and changes
		// in force at or after the changes cutoff.
		var want []int64
		for i, e := range entries {
			nextAny, nextChange := int64(math.MaxInt64), int64(math.MaxInt64)
			if i+1 < len(entries) {
				nextAny = entries[i+1].at
			}
			for _, f := range entries[i+1:] {
				if f.kind == kindChange {
					nextChange = f.at
					break
				}
			}
			if nextAny >= cut.raw || (e.kind == kindChange && nextChange >= cut.changes) {
				want = append(want, e.at)
			}
		}
		var got []int64
		for _, e := range changeEntries(t, db, 1) {
			got = append(got, e.at)
		}
		if !slices.Equal(got, want) || len(got) == len(entries) {
			t.Errorf("kept %d of %d stored Reports, want %d", len(got), len(entries), len(want))
		}
		// Every kept Report still reads (its body and base are there) and
		// no body is left that nothing refers to.
		if st.Bodies == 0 {
			t.Error("no body collected")
		}
		p, err := db.Query("w_1", HistoryQuery{MaxReports: 1000})
		if err != nil {
			t.Fatal(err)
		}
		refs := map[string]bool{}
		for _, sr := range p.Reports {
			refs[sr.Ref] = true
		}
		for _, s := range p.Samples {
			if !refs[s.Report] {
				t.Fatalf("sample at %v refers to %s, which the answer lacks", s.At, s.Report)
			}
		}
	})
	if again, err := db.Prune(context.Background(), 0); err != nil || again.Samples+again.Hours+again.Days+again.Reports+again.Bodies != 0 {
		t.Errorf("second prune deleted more: %+v %v", again, err)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func changeEntries(t testing.TB, db *DB, wnum uint32) []change {
	t.Helper()
	var out []change
	db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bChanges).Cursor()
		p := wnumPrefix(wnum)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			ch, err := decodeChange(k, v)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ch)
		}
		return nil
	})
	return out
}

func storedSamples(t testing.TB, db *DB, wnum uint32) []rawSample {
	t.Helper()
	var out []rawSample
	db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bSamples).Cursor()
		p := wnumPrefix(wnum)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if _, err := decodeBlock(blockKeyMS(k), v, func(s *rawSample) bool { out = append(out, *s); return true }); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	})
	return out
}

// storedAggs returns the hours kept (start ms -> status counts) and the
// days whose aggregate is kept, rolled up or as hours (start ms -> probes).
func storedAggs(t testing.TB, db *DB, wnum uint32) (map[int64]StatusCounts, map[int64]int) {
	t.Helper()
	hours, days := map[int64]StatusCounts{}, map[int64]int{}
	cut := db.cutoffs(db.now())
	db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAggs).Cursor()
		p := wnumPrefix(wnum)
		for k, raw := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, raw = c.Next() {
			v, err := decodeDayAggs(raw)
			if err != nil {
				t.Fatal(err)
			}
			d := aggKeyDay(k) * msPerDay
			for h := range 24 {
				if v.mask&(1<<h) != 0 {
					hours[d+int64(h)*msPerHour] = v.hours[h].summary().Statuses
				}
			}
			if d >= cut.day {
				w := v.whole()
				days[d] = int(w.probes())
			} else if v.dayOK {
				t.Errorf("day %v kept past its age", time.UnixMilli(d).UTC())
			}
		}
		return nil
	})
	return hours, days
}

func TestDeleteRemovesHistory(t *testing.T) {
	db, _ := openHistDB(t, Retention{})
	addWatch(t, db, "w_1")
	addWatch(t, db, "w_2")
	for i := range 100 {
		at := t0.Add(time.Duration(i) * time.Hour)
		st := probe.Status("ok")
		if i%10 == 0 {
			st = "warning"
		}
		record(t, db, "w_1", fullReport(at, st, "fpA", t0.Add(90*24*time.Hour), 5))
		record(t, db, "w_2", fullReport(at, st, "fpA", t0.Add(90*24*time.Hour), 5))
	}
	if _, err := db.Delete("w_1"); err != nil {
		t.Fatal(err)
	}
	db.bolt.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bHeads).Get([]byte("w_1")) != nil {
			t.Error("head survived Delete")
		}
		for _, b := range [][]byte{bSamples, bAggs, bChanges, bBodies} {
			c := tx.Bucket(b).Cursor()
			if k, _ := c.Seek(wnumPrefix(1)); k != nil && bytes.HasPrefix(k, wnumPrefix(1)) {
				t.Errorf("%s: keys of the deleted watch remain", b)
			}
			if k, _ := c.Seek(wnumPrefix(2)); k == nil || !bytes.HasPrefix(k, wnumPrefix(2)) {
				t.Errorf("%s: the other watch's keys went too", b)
			}
		}
		return nil
	})
	// A new watch with the same id starts afresh, with a new number.
	addWatch(t, db, "w_1")
	record(t, db, "w_1", fullReport(t0.Add(200*time.Hour), "ok", "fpA", t0.Add(90*24*time.Hour), 5))
	if p, err := db.Query("w_1", HistoryQuery{}); err != nil || len(p.Samples) != 1 || len(p.Reports) != 1 {
		t.Errorf("re-added watch: %d samples, %d reports, %v", len(p.Samples), len(p.Reports), err)
	}
}

func TestParseRetention(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Retention
		err  string
	}{
		{"", Retention{}, ""},
		{"raw=30d,agg=400d,changes=400d", Retention{Raw: 30 * day, Hour: 400 * day, Day: 400 * day, Changes: 400 * day}, ""},
		{"raw=36h, hour=2w, size=2GB", Retention{Raw: 36 * time.Hour, Hour: 14 * day, MaxBytes: 2e9}, ""},
		{"day=1000d,size=512MiB", Retention{Day: 1000 * day, MaxBytes: 512 << 20}, ""},
		{"raw", Retention{}, "want kind=period"},
		{"raw=30", Retention{}, "not a period"},
		{"raw=10m", Retention{}, "out of range"},
		{"secs=3d", Retention{}, "unknown kind"},
		{"size=12", Retention{}, "out of range"},
		{"size=lots", Retention{}, "not a size"},
		{"raw=99999999d", Retention{}, "not a whole number"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRetention("retention", tc.in)
			if tc.err != "" {
				var fe *probe.FieldError
				if !errors.As(err, &fe) || fe.Field != "retention" || !strings.Contains(fe.Reason, tc.err) {
					t.Fatalf("err = %v, want a retention FieldError with %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if back, err := ParseRetention("retention", got.String()); err != nil || back.withDefaults() != got.withDefaults() {
				t.Errorf("String %q reads back as %+v, %v", got.String(), back, err)
			}
		})
	}
}

// Recent's windows hold exactly the probes of the last 24 hours (by whole
// hours) and 30 days (by whole days).
func TestRecentWindows(t *testing.T) {
	db, clk := openHistDB(t, Retention{})
	addWatch(t, db, "w_1")
	addWatch(t, db, "w_none")
	start := time.Date(2026, 10, 1, 0, 30, 0, 0, time.UTC)
	var all []probe.Status
	for h := range 45 * 24 {
		st := probe.Status("ok")
		if h%10 == 0 {
			st = "down"
		}
		all = append(all, st)
		record(t, db, "w_1", fullReport(start.Add(time.Duration(h)*time.Hour), st, "fpA", start.Add(90*day), float64(1+h%7)))
	}
	clk.t = start.Add(45*24*time.Hour - 40*time.Minute) // 23:50, the last probe was at 23:30
	got, err := db.RecentOf([]string{"w_1", "w_none", "w_missing"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["w_none"]; ok || len(got) != 1 {
		t.Errorf("watches without history listed: %v", got)
	}
	r := got["w_1"]
	count := func(last int) (n, down int) {
		for _, st := range all[len(all)-last:] {
			n++
			if st == "down" {
				down++
			}
		}
		return
	}
	n, down := count(24)
	if r.Day.Probes != n || r.Day.Failures != down {
		t.Errorf("24 h: %d probes, %d failures; want %d, %d", r.Day.Probes, r.Day.Failures, n, down)
	}
	// 30 UTC days ending today: today's 24 probes (00:30..23:30) and 29 days before.
	n, down = count(30 * 24)
	if r.Month.Probes != n || r.Month.Failures != down || math.Abs(r.Month.Uptime-float64(n-down)/float64(n)) > 5e-7 {
		t.Errorf("30 d: %+v; want %d probes, %d failures", r.Month, n, down)
	}
	if r.Day.HandshakeP50MS < 1 || r.Day.HandshakeP95MS > 7*1.01 || r.Day.HandshakeP95MS < r.Day.HandshakeP50MS {
		t.Errorf("24 h latency: %+v", r.Day)
	}
}

// Over the size budget, the pruner keeps less raw history (then fewer
// hourly aggregates) until the live data fits, and reads follow.
func TestSizeBudget(t *testing.T) {
	db, clk := openHistDB(t, Retention{MaxBytes: 1 << 20})
	db.bolt.NoSync = true
	clk.t = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSim(t, db, clk, 30, 5*time.Minute)
	s.run(clk.t.Add(12*day), day, nil)
	first, err := db.Prune(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if first.LiveBytes <= 1<<20 || !first.BudgetActive {
		t.Fatalf("the simulation should exceed the budget: %+v", first)
	}
	var last PruneStats
	for range 20 {
		if last, err = db.Prune(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	db.mu.Lock()
	raw, hour := db.ret.Raw, db.ret.Hour
	db.mu.Unlock()
	t.Logf("live %d -> %d bytes; retention now raw %v, hour %v", first.LiveBytes, last.LiveBytes, raw, hour)
	if last.LiveBytes > 1<<20 && raw > day {
		t.Errorf("still over budget (%d bytes) with raw retention %v", last.LiveBytes, raw)
	}
	p, err := db.Query(s.watches[0].rec.ID, HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if oldest := p.Samples[len(p.Samples)-1].At; oldest.Before(clk.t.Add(-raw)) {
		t.Errorf("oldest sample %v is older than the shortened retention %v", oldest, raw)
	}
}
