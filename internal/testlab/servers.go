package testlab

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// quietLog swallows http.Server's per-connection errors (every probe that
// aborts a handshake on purpose would otherwise print one).
var quietLog = log.New(io.Discard, "", 0)

// ServeTLS serves cfg on 127.0.0.1:0 with a tiny HTTPS handler answering 200
// "ok", and returns the address. The server closes on t.Cleanup.
func ServeTLS(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	return ServeTLSHandler(t, cfg, nil)
}

// ServeTLSHandler is ServeTLS with a handler of the caller's (nil: 200 "ok"),
// for tests that need HTTP semantics over the lab's TLS (e.g. MCP).
func ServeTLSHandler(t testing.TB, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testlab: listen: %v", err)
	}
	srv := &http.Server{
		Handler:           h,
		ErrorLog:          quietLog,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(tls.NewListener(ln, cfg.Clone()))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// ServeAIA serves cert as DER at /<name>.crt over plain HTTP (as CAs publish
// caIssuers) and returns the full URL. Requests are counted in hits, which
// may be nil.
func ServeAIA(t testing.TB, cert *x509.Certificate, hits *atomic.Int64) string {
	t.Helper()
	return ServeAIABytes(t, cert.Raw, "application/pkix-cert", hits)
}

// ServeAIAPEM is ServeAIA serving PEM text, which some CAs do.
func ServeAIAPEM(t testing.TB, cert *x509.Certificate, hits *atomic.Int64) string {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return ServeAIABytes(t, b, "application/x-pem-file", hits)
}

// ServeAIABytes serves arbitrary bytes at /issuer.crt (for garbage and
// oversize tests) and returns the URL.
func ServeAIABytes(t testing.TB, body []byte, contentType string, hits *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil {
			hits.Add(1)
		}
		if r.URL.Path != "/issuer.crt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Write(body)
	}))
	srv.Config.ErrorLog = quietLog
	t.Cleanup(srv.Close)
	return srv.URL + "/issuer.crt"
}

// RefusedAddr returns a loopback address where nothing listens: a listener
// is opened to reserve a port, then closed. Connecting gets ECONNREFUSED.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testlab: listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// NeverAnswers returns the address of a listener that accepts connections
// and then says nothing, so a TLS client waits for ServerHello until its
// deadline. Connections are closed on t.Cleanup.
func NeverAnswers(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testlab: listen: %v", err)
	}
	t.Cleanup(hold(ln, nil))
	return ln.Addr().String()
}

// Squat listens on the unix socket path, replacing the file there, and
// holds every connection open, saying nothing, or writing reply once: what
// a process that took another's socket looks like. stop (also run on
// t.Cleanup) closes the listener and the connections.
func Squat(t testing.TB, path string, reply []byte) (stop func()) {
	t.Helper()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("testlab: listen on %s: %v", path, err)
	}
	var once sync.Once
	release := hold(ln, reply)
	stop = func() { once.Do(release) }
	t.Cleanup(stop)
	return stop
}

// hold accepts on ln until it closes, keeping each connection open (its
// input drained so the peer's writes never block) after writing reply; the
// returned func closes the listener and every connection.
func hold(ln net.Listener, reply []byte) func() {
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if len(reply) > 0 {
				c.Write(reply)
			}
			go io.Copy(io.Discard, c)
		}
	}()
	return func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

// PlainHTTP returns the address of a plain-text HTTP server: the peer answers
// a ClientHello with an HTTP 400, which is not TLS.
func PlainHTTP(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain http\n")
	}))
	srv.Config.ErrorLog = quietLog
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// Rotating is a TLS server whose certificate can be swapped while it runs,
// the way a server reloads after renewal.
type Rotating struct {
	Addr string
	cur  atomic.Pointer[tls.Certificate]
}

// ServeRotating starts a server presenting cert until Rotate is called.
func ServeRotating(t testing.TB, cert tls.Certificate) *Rotating {
	t.Helper()
	r := &Rotating{}
	r.cur.Store(&cert)
	cfg := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cur.Load(), nil },
	}
	r.Addr = ServeTLS(t, cfg)
	return r
}

// Rotate makes every later handshake present cert.
func (r *Rotating) Rotate(cert tls.Certificate) { r.cur.Store(&cert) }

// Current returns the certificate being served.
func (r *Rotating) Current() tls.Certificate { return *r.cur.Load() }
