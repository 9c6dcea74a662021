package probe

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Bulk scans: the bounded fan-out that `tlswatch scan` and the
// scan_endpoints tool share, so that BenchmarkScan measures what
// ships.

// ScanFunc probes the i-th target of a scan. Run is the usual body; callers
// wrap it to parse input or take a limiter slot first.
type ScanFunc func(ctx context.Context, i int) (Report, error)

// Scan calls probe for i = 0..n-1, at most concurrency at a time (values
// below 1 mean 1), taking targets in order, and done(i, report, err) as each
// finishes. probe and done run on one of at most concurrency worker
// goroutines (not one goroutine per target), so done must be safe for
// concurrent use; a slow done holds its worker. A panic in probe is
// recovered and becomes that target's error. Once ctx is done, targets not
// yet started are skipped (done is not called for them). Scan returns when
// every started target's done has returned; it leaves no goroutine behind.
func Scan(ctx context.Context, n, concurrency int, probe ScanFunc, done func(i int, r Report, err error)) {
	if n <= 0 {
		return
	}
	concurrency = max(1, min(concurrency, n))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				r, err := scanOne(ctx, i, probe)
				done(i, r, err)
			}
		})
	}
	wg.Wait()
}

func scanOne(ctx context.Context, i int, probe ScanFunc) (r Report, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = Report{}, fmt.Errorf("internal error: %v", p)
		}
	}()
	return probe(ctx, i)
}
