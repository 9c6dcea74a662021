package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// A fleet simulation: watches probed on a schedule by a fake clock that
// drives the store directly (no network, no scheduler), with Reports made
// from one real Report of a loopback server. Each watch has its own
// latency (log-normal around a base of 5 to 200 ms), a 90-day certificate
// renewed 30 days before expiry (a rotation: a change), and now and then an
// outage of one to four probes (two changes). One watch in a hundred lets
// its certificate run into the expiry stages before renewing.

var (
	realOnce sync.Once
	realRep  probe.Report
	realErr  error
)

// realReport is one Report of a loopback TLS server probed with the
// watcher's default options (legacy protocols, trust stores, revocation).
func realReport(t testing.TB) probe.Report {
	realOnce.Do(func() {
		p := testlab.NewPKI(t)
		sc := testlab.Start(t, p, testlab.ScenarioValid)
		realRep, realErr = probe.Run(context.Background(),
			probe.Target{Host: sc.Host, Port: sc.Port, IP: sc.IP, Timeout: 10 * time.Second},
			probe.Options{Now: sc.Now, Roots: sc.Roots})
	})
	if realErr != nil {
		t.Fatal(realErr)
	}
	return realRep
}

type simWatch struct {
	rec       Record
	baseMS    float64
	notAfter  time.Time
	gen       int
	neglect   bool
	outage    int // probes left in the current outage
	rng       *rand.Rand
	lifetime  time.Duration
	renewLeft time.Duration
}

type sim struct {
	t       testing.TB
	db      *DB
	clk     *clock
	tmpl    probe.Report
	watches []*simWatch
	every   time.Duration
	noise   float64 // σ of the log-normal latency jitter
	outages bool
}

func newSim(t testing.TB, db *DB, clk *clock, n int, every time.Duration) *sim {
	s := &sim{t: t, db: db, clk: clk, tmpl: realReport(t), every: every, noise: 0.15, outages: true}
	rng := rand.New(rand.NewPCG(42, uint64(n)))
	var ups []Update
	for i := range n {
		w := &simWatch{
			rng:       rand.New(rand.NewPCG(uint64(i), 7)),
			baseMS:    5 * math.Pow(40, rng.Float64()),
			lifetime:  90 * day,
			renewLeft: 30 * day,
			neglect:   i%100 == 99,
		}
		w.notAfter = clk.t.Add(time.Duration(rng.Int64N(int64(60*day))) + 30*day)
		id := fmt.Sprintf("w_%016x", uint64(i)*0x9e3779b97f4a7c15)
		w.rec = Record{ID: id, Target: probe.TargetInfo{Host: fmt.Sprintf("host%05d.example.com", i), Port: 443},
			Schedule: "@every " + every.String(), Thresholds: probe.DefaultThresholds, FailureThreshold: 3,
			CreatedAt: clk.t, UpdatedAt: clk.t, State: "pending"}
		s.watches = append(s.watches, w)
		ups = append(ups, Update{Record: w.rec, Create: true})
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	return s
}

// report is watch w's Report at time at.
func (s *sim) report(w *simWatch, at time.Time) *probe.Report {
	renewAt := w.notAfter.Add(-w.renewLeft)
	if w.neglect {
		renewAt = w.notAfter.Add(3 * day) // renewed three days after expiry
	}
	if !at.Before(renewAt) {
		w.gen++
		w.notAfter = at.Add(w.lifetime)
	}
	if s.outages && w.outage == 0 && w.rng.IntN(3000) == 0 {
		w.outage = 1 + w.rng.IntN(4)
	}
	r := s.tmpl
	r.Target.Host, r.Target.SNI, r.Target.IP, r.Target.Port = w.rec.Target.Host, w.rec.Target.Host, "", 443
	r.CheckedAt = at
	hs := w.baseMS * math.Exp(w.rng.NormFloat64()*s.noise)
	r.Timing = probe.Timing{DNS: 0.3 + w.rng.Float64()*0.1, Connect: hs / 3, Handshake: hs, Total: hs*1.4 + 1}
	if w.outage > 0 {
		w.outage--
		r.Status, r.Reachable, r.Trusted, r.ExpiryStage = probe.StatusDown, false, false, "none"
		r.TLS, r.Leaf, r.Chain, r.Protocols, r.TrustStores, r.Revocation, r.SCTCount = nil, nil, nil, nil, nil, nil, nil
		r.Findings = []probe.Finding{{Code: "connection_refused", Severity: probe.SeverityCritical,
			Message: "connect to " + w.rec.Target.Host + ":443: connection refused"}}
		r.Timing.Handshake = 0
		return &r
	}
	leaf := *r.Leaf
	leaf.SHA256 = fmt.Sprintf("%032x%032x", hashString(w.rec.ID), w.gen)
	leaf.NotAfter, leaf.NotBefore = w.notAfter, w.notAfter.Add(-w.lifetime)
	leaf.DaysRemaining = probe.DaysRemaining(w.notAfter, at)
	leaf.SANs = []string{w.rec.Target.Host}
	leaf.Subject = "CN=" + w.rec.Target.Host
	r.Leaf = &leaf
	r.ExpiryStage = probe.ExpiryStage(probe.Validity{NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, at, probe.DefaultThresholds)
	r.Status, r.Findings = probe.StatusOK, r.Findings[:len(r.Findings):len(r.Findings)]
	if d := leaf.DaysRemaining; d <= 30 {
		sev := probe.SeverityInfo // by DESIGN.md: info <= 30 days, warning <= 14, critical <= 7
		switch {
		case d <= 7:
			sev = probe.SeverityCritical
		case d <= 14:
			sev = probe.SeverityWarning
		}
		r.Findings = append(r.Findings, probe.Finding{Code: "expiring_soon", Severity: sev,
			Message: fmt.Sprintf("the certificate expires in %d days", d)})
		if sev == probe.SeverityCritical {
			r.Status = probe.StatusCritical
		} else if sev == probe.SeverityWarning {
			r.Status = probe.StatusWarning
		}
	}
	return &r
}

func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// run probes every watch once per schedule tick, the watches' probes spread
// over the tick, until the clock reaches until. It commits whenever the
// probes' time crosses a multiple of commitEvery (the watcher commits a
// group each second; a day makes a long simulation fast), and calls daily
// at each UTC midnight.
func (s *sim) run(until time.Time, commitEvery time.Duration, daily func(now time.Time)) {
	var ups []Update
	next := s.clk.t.Truncate(commitEvery).Add(commitEvery)
	for s.clk.t.Before(until) {
		base := s.clk.t
		for i, w := range s.watches {
			at := base.Add(time.Duration(i) * s.every / time.Duration(len(s.watches)))
			if !at.Before(next) {
				s.apply(ups)
				ups = ups[:0]
				next = at.Truncate(commitEvery).Add(commitEvery)
			}
			rep := s.probe(w, at)
			ups = append(ups, Update{Record: w.rec, Report: rep})
		}
		tick := base.Add(s.every)
		if daily != nil && tick.Truncate(day) != base.Truncate(day) {
			s.apply(ups)
			ups = ups[:0]
			s.clk.t = tick.Truncate(day)
			daily(s.clk.t)
		}
		s.clk.t = tick
	}
	s.apply(ups)
}

// probe is watch w's probe at time at: its Report, with the record updated
// as the watcher would.
func (s *sim) probe(w *simWatch, at time.Time) *probe.Report {
	rep := s.report(w, at)
	w.rec.LastCheckedAt, w.rec.LastStatus = at, string(rep.Status)
	w.rec.State = "up"
	if rep.Status == probe.StatusDown {
		w.rec.State = "down"
	}
	if rep.Leaf != nil {
		w.rec.NotAfter, w.rec.Fingerprint = rep.Leaf.NotAfter, rep.Leaf.SHA256
	}
	return rep
}

func (s *sim) apply(ups []Update) {
	if len(ups) == 0 {
		return
	}
	if _, err := s.db.Apply(ups); err != nil {
		s.t.Fatal(err)
	}
}

// sizes of the file: the data size (highest page in use), the live data
// (less free pages) and the size on disk.
type fileSizes struct{ data, live, disk int64 }

func sizesOf(t testing.TB, db *DB) fileSizes {
	t.Helper()
	var fs fileSizes
	db.bolt.View(func(tx *bolt.Tx) error { fs.data = tx.Size(); return nil })
	fs.live = fs.data - int64(db.bolt.Stats().FreeAlloc)
	if st, err := os.Stat(db.Path()); err == nil {
		fs.disk = st.Size()
	}
	return fs
}

// compactedSize is the data size of a copy made by bbolt's Compact (what
// `bbolt compact` does): the live data, pages filled.
func compactedSize(t testing.TB, db *DB) int64 {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("compact-%d.db", time.Now().UnixNano()))
	dst, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	defer dst.Close()
	if err := bolt.Compact(dst, db.bolt.DB, 64<<20); err != nil {
		t.Fatal(err)
	}
	var size int64
	dst.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size
}

// The file stops growing once retention is reached: a reduced-scale run
// of the year simulation (BenchmarkSimulateFleet has the full one).
func TestSimulationFileStopsGrowing(t *testing.T) {
	ret := Retention{Raw: 5 * day, Hour: 12 * day, Day: 12 * day, Changes: 12 * day}
	db, clk := openHistDB(t, ret)
	db.bolt.NoSync = true
	clk.t = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSim(t, db, clk, 40, time.Hour)
	var sizes []fileSizes
	s.run(clk.t.Add(40*day), 10*time.Minute, func(now time.Time) {
		if _, err := db.Prune(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, sizesOf(t, db))
	})
	steady := sizes[20:] // retention (12 days) reached, plus margin
	lo, hi := steady[0].data, steady[0].data
	for _, fs := range steady {
		lo, hi = min(lo, fs.data), max(hi, fs.data)
	}
	t.Logf("data size over days 20-40: %d..%d bytes (day 10: %d)", lo, hi, sizes[10].data)
	if float64(hi) > 1.15*float64(steady[0].data) {
		t.Errorf("file grew from %d to %d bytes after retention was reached", steady[0].data, hi)
	}
	if p, err := db.Query(s.watches[0].rec.ID, HistoryQuery{Resolution: ResolutionDay}); err != nil || len(p.Aggregates) != 12 {
		t.Errorf("day aggregates after pruning: %d, %v; want 12", len(p.Aggregates), err)
	}
}
