package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// Scan throughput: 2,000 loopback endpoints, each with its own
// leaf certificate (one shared intermediate, as in a real fleet), scanned at
// concurrency 64 through Scan + Run with default options (what `tlswatch
// scan` and scan_endpoints run) versus bare handshakes (tls.Dial plus
// x509 Verify) at the same concurrency:
//
//	go test -run '^$' -bench 'BenchmarkScan2000' -benchtime 3x -count 10 ./probe/ | tee scan.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /path scan.txt
//
// path=scan empties the verification cache before every pass, so every leaf
// is verified as new (a first scan of a fleet); path=rescan keeps it (the
// same fleet scanned again, as a watcher does).

const (
	scanEndpoints   = 2000
	scanConcurrency = 64
)

type scanLab struct {
	targets []Target
	roots   *x509.CertPool
}

// raiseNoFile lifts the soft descriptor limit towards the hard one: 2,000
// listeners plus 64 probes in flight (each with its legacy handshake) on
// both ends. Go raises it at start already; this makes the need explicit.
func raiseNoFile(b *testing.B, need uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if rl.Cur >= need {
		return
	}
	rl.Cur = min(need, rl.Max)
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	if rl.Cur < need {
		b.Skipf("RLIMIT_NOFILE hard limit %d < %d descriptors needed", rl.Max, need)
	}
}

// startScanLab starts the endpoints (about a second); they stop when b
// ends.
func startScanLab(b *testing.B) *scanLab {
	raiseNoFile(b, scanEndpoints+8*scanConcurrency+256)
	pki := testlab.NewPKI(b)
	lab := &scanLab{roots: pki.Roots()}
	var wg sync.WaitGroup
	var lns []net.Listener
	b.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	for i := range scanEndpoints {
		host := fmt.Sprintf("h%04d.scan.tlswatch.test", i)
		cert := pki.Leaf(testlab.LeafOpts{DNSNames: []string{host}})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatalf("listen #%d: %v", i, err)
		}
		lns = append(lns, ln)
		wg.Go(func() { serveHandshakes(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}), &wg) })
		port := ln.Addr().(*net.TCPAddr).Port
		lab.targets = append(lab.targets, Target{Host: host, SNI: host, IP: "127.0.0.1", Port: port, Timeout: DefaultTimeout})
	}
	return lab
}

// serveHandshakes completes each TLS handshake and waits for the client to
// close, like a server that got no request.
func serveHandshakes(ln net.Listener, wg *sync.WaitGroup) {
	acceptEach(ln, wg, func(c net.Conn) {
		if err := c.(*tls.Conn).Handshake(); err != nil {
			return
		}
		var buf [1]byte
		c.Read(buf[:])
	})
}

// acceptEach runs handle on every connection ln accepts, each in a
// goroutine of wg, with a 10 s deadline, and closes it after; it returns
// when ln is closed.
func acceptEach(ln net.Listener, wg *sync.WaitGroup, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			handle(c)
		})
	}
}

func BenchmarkScan2000(b *testing.B) {
	lab := startScanLab(b)
	// One Cache for the whole benchmark, as a scanning process keeps one;
	// a cold pass starts from a new one.
	opts := Options{Roots: lab.roots, Cache: NewCache()}
	// As `tlswatch scan` and scan_endpoints call it: Scan, and Run with
	// the same Options for every target.
	scan := func(b *testing.B) {
		var failed sync.Once
		Scan(context.Background(), len(lab.targets), scanConcurrency, func(ctx context.Context, i int) (Report, error) {
			return Run(ctx, lab.targets[i], opts)
		}, func(i int, r Report, err error) {
			if err != nil || r.Status != StatusOK {
				failed.Do(func() { b.Errorf("%s: %v %s %v", lab.targets[i].Host, err, r.Status, findingCodes(r.Findings)) })
			}
		})
	}
	bare := func(b *testing.B) {
		var failed sync.Once
		Scan(context.Background(), len(lab.targets), scanConcurrency, func(ctx context.Context, i int) (Report, error) {
			return Report{}, bareHandshake(lab.targets[i], lab.roots)
		}, func(i int, _ Report, err error) {
			if err != nil {
				failed.Do(func() { b.Errorf("%s: %v", lab.targets[i].Host, err) })
			}
		})
	}
	run := func(b *testing.B, pass func(*testing.B), cold bool) {
		pass(b) // warm-up: trust stores parsed, listeners' first accepts
		b.ResetTimer()
		var cpu time.Duration
		for b.Loop() {
			if cold {
				b.StopTimer()
				opts.Cache = NewCache()
				b.StartTimer()
			}
			c0 := processCPU()
			pass(b)
			cpu += processCPU() - c0
		}
		n := float64(b.N * len(lab.targets))
		b.ReportMetric(n/b.Elapsed().Seconds(), "endpoints/s")
		// CPU of the whole process (both ends of every connection) per
		// endpoint: less sensitive than wall time to other load on a
		// shared machine.
		b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/endpoint")
	}
	b.Run("path=bare", func(b *testing.B) { run(b, bare, false) })
	b.Run("path=scan", func(b *testing.B) { run(b, scan, true) })
	b.Run("path=rescan", func(b *testing.B) { run(b, scan, false) })
}

// bareHandshake is the physical limit: one tls.Dial and one Verify.
func bareHandshake(t Target, roots *x509.CertPool) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	addr := net.JoinHostPort(t.IP, strconv.Itoa(t.Port))
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: t.SNI, InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	certs := c.ConnectionState().PeerCertificates
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: t.SNI})
	return err
}

// processCPU is the user plus system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
