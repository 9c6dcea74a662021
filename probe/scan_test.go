package probe

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestScanBoundsOrderPanicCancel(t *testing.T) {
	const n, conc = 50, 4
	var running, peak atomic.Int64
	var mu sync.Mutex
	got := map[int]string{}
	Scan(context.Background(), n, conc, func(ctx context.Context, i int) (Report, error) {
		r := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if r <= p || peak.CompareAndSwap(p, r) {
				break
			}
		}
		if i == 7 {
			panic("boom")
		}
		return Report{Target: TargetInfo{Port: i}}, nil
	}, func(i int, r Report, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			got[i] = err.Error()
		case r.Target.Port != i:
			t.Errorf("done(%d) got the report of %d", i, r.Target.Port)
		default:
			got[i] = "ok"
		}
	})
	if len(got) != n {
		t.Fatalf("done called for %d targets, want %d", len(got), n)
	}
	if p := peak.Load(); p > conc {
		t.Errorf("peak concurrency %d > %d", p, conc)
	}
	if !strings.Contains(got[7], "internal error: boom") {
		t.Errorf("panic: %q", got[7])
	}

	// Cancelled: targets not started are skipped.
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	Scan(ctx, n, 1, func(ctx context.Context, i int) (Report, error) {
		if i == 2 {
			cancel()
		}
		return Report{}, ctx.Err()
	}, func(int, Report, error) { calls.Add(1) })
	if c := calls.Load(); c != 3 {
		t.Errorf("after cancel: %d done calls, want 3", c)
	}
	Scan(context.Background(), 0, 8, nil, nil) // nothing to do
}
