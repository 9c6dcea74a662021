package watch_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// BenchmarkLiveBytesPerProbeEngine measures history's cost end to end, by
// the method the issue used for the old layout: 40 watches at @every 1s on
// loopback TLS servers, probed by the engine on the real clock with serve's
// probe options; the database compacted before and after two minutes of
// probes; the growth of its live data divided by the probes committed
// meanwhile (2,070 bytes before the compact history). Run with
// -benchtime 1x.
func BenchmarkLiveBytesPerProbeEngine(b *testing.B) {
	const watches = 40
	p := testlab.NewPKI(b)
	prober := &watch.Prober{Base: probe.Options{Roots: p.Roots()}}
	var perProbe float64
	for b.Loop() {
		path := filepath.Join(b.TempDir(), "tlswatch.db")
		run := func(d time.Duration, add bool) {
			db, err := store.Open(path, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			eng, err := watch.NewEngine(db, watch.Config{Prober: prober, Logger: testLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close()
			for i := 0; add && i < watches; i++ {
				srv := serveLab(b, leafIn(p, 90*24*time.Hour))
				if _, err := eng.Add(context.Background(), srv.spec("@every 1s")); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(d)
		}
		run(10*time.Second, true) // past the first probes and Reports
		before, n0 := compactCopy(b, path)
		run(2*time.Minute, false) // ~4,800 probes: a page (4 KB) is under a byte a probe
		after, n1 := compactCopy(b, path)
		perProbe = float64(after-before) / float64(n1-n0)
		b.Logf("%d probes committed; live data %d -> %d bytes", n1-n0, before, after)
	}
	b.ReportMetric(perProbe, "live-B/probe")
}

// compactCopy compacts a copy of the database and returns its live bytes
// and the probes the store has recorded.
func compactCopy(b *testing.B, path string) (int64, int) {
	b.Helper()
	cp := filepath.Join(b.TempDir(), "copy.db")
	src, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(cp)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
	dst.Close()
	res, err := store.CompactFile(cp, 0)
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open(cp, store.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.ForEach(func(r store.Record) error { n += r.HistoryCount; return nil })
	return res.Live, n
}
