package testlab

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The hostile lab: servers that misbehave on purpose, so that
// tests can prove every probe ends within its deadline with a classified
// finding, memory stays bounded, and other probes carry on meanwhile.
// Everything listens on 127.0.0.1 and stops on t.Cleanup; no goroutine
// outlives the test (goleak checks it).

// serveRaw accepts TCP connections on 127.0.0.1:0 and runs handle on each
// in its own goroutine. done closes at cleanup; then every connection is
// closed and every handler waited for. It returns the address.
func serveRaw(t testing.TB, handle func(c net.Conn, done <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testlab: listen: %v", err)
	}
	done := make(chan struct{})
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				handle(c, done)
			}()
		}
	}()
	t.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// readClientHello reads one TLS record (the ClientHello) from c, with a
// bound on its size; it returns false when the peer sent something else or
// went away.
func readClientHello(c net.Conn) bool {
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != 0x16 {
		return false
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	_, err := io.CopyN(io.Discard, c, int64(n))
	return err == nil
}

// Dripper returns the address of a server that reads the ClientHello and
// then sends the start of a plausible TLS record one byte a second, for
// ever: a client without a deadline waits indefinitely.
func Dripper(t testing.TB) string {
	t.Helper()
	// A handshake record announcing 16 KiB, then filler.
	drip := []byte{0x16, 0x03, 0x03, 0x40, 0x00, 0x02}
	return serveRaw(t, func(c net.Conn, done <-chan struct{}) {
		drained := make(chan struct{})
		go func() { // never block the client's writes
			defer close(drained)
			io.Copy(io.Discard, c)
		}()
		defer func() { c.Close(); <-drained }()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			b := byte(0)
			if i < len(drip) {
				b = drip[i]
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
}

// GarbageServer returns the address of a server that answers the
// ClientHello with bytes that are not TLS, then closes.
func GarbageServer(t testing.TB) string {
	t.Helper()
	return serveRaw(t, func(c net.Conn, done <-chan struct{}) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		readClientHello(c)
		c.Write([]byte("\x00\xffSSH-2.0-garbage\r\n\x07\x07\x07 this is not a TLS server at all"))
	})
}

// ResetAfterHello returns the address of a server that reads the
// ClientHello and then resets the connection (RST, not FIN): the way a
// crashing TLS terminator or an IPS looks.
func ResetAfterHello(t testing.TB) string {
	t.Helper()
	return serveRaw(t, func(c net.Conn, done <-chan struct{}) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		readClientHello(c)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // Close sends RST
		}
	})
}

// oidHugeExtension is a private-arc OID for the oversized extension.
var oidHugeExtension = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 6, 1}

// HugeLeaf issues a valid leaf for DefaultHost padded with a non-critical
// extension so that its DER is at least size bytes.
func (p *PKI) HugeLeaf(size int) tls.Certificate {
	p.t.Helper()
	pad := make([]byte, size)
	val, err := asn1.Marshal(pad)
	if err != nil {
		p.t.Fatalf("testlab: huge extension: %v", err)
	}
	return p.Leaf(LeafOpts{ExtraExtensions: []pkix.Extension{{Id: oidHugeExtension, Value: val}}})
}

// LongChain issues a leaf for DefaultHost at the bottom of a line of n-1
// intermediates under the trusted root, served leaf first with every
// intermediate in order: n certificates in all, each one valid.
func (p *PKI) LongChain(n int) tls.Certificate {
	p.t.Helper()
	parent := p.Root
	var line []*x509.Certificate
	for i := 1; i < n; i++ {
		parent = p.NewIntermediate(parent, CAOpts{CommonName: fmt.Sprintf("tlswatch lab long chain %d", i)})
		line = append(line, parent.Cert)
	}
	served := make([]*x509.Certificate, 0, len(line))
	for i := len(line) - 1; i >= 0; i-- {
		served = append(served, line[i])
	}
	return p.Leaf(LeafOpts{Issuer: parent, Chain: served})
}

// newHTTP starts an httptest server with h; hanging handlers are released
// at cleanup before the server closes.
func newHTTP(t testing.TB, h func(w http.ResponseWriter, r *http.Request, done <-chan struct{})) *httptest.Server {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, done) }))
	srv.Config.ErrorLog = quietLog
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs first
	return srv
}

// ServeAIARedirectLoop returns an AIA URL that redirects to itself, with a
// new query each time, for ever. hits counts requests (may be nil).
func ServeAIARedirectLoop(t testing.TB, hits *atomic.Int64) string {
	t.Helper()
	srv := newHTTP(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		n := 0
		if hits != nil {
			n = int(hits.Add(1))
		}
		http.Redirect(w, r, "/issuer.crt?hop="+strconv.Itoa(n), http.StatusFound)
	})
	return srv.URL + "/issuer.crt"
}

// ServeAIARedirect returns an AIA URL that redirects to target (for the
// outbound policy: a redirect to a refused address).
func ServeAIARedirect(t testing.TB, target string, hits *atomic.Int64) string {
	t.Helper()
	srv := newHTTP(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		if hits != nil {
			hits.Add(1)
		}
		http.Redirect(w, r, target, http.StatusFound)
	})
	return srv.URL + "/issuer.crt"
}

// ServeAIAStream returns an AIA URL that streams total bytes of a
// plausible DER prefix and filler as fast as the client reads. written
// counts the bytes that left the server (may be nil).
func ServeAIAStream(t testing.TB, total int64, written *atomic.Int64) string {
	t.Helper()
	srv := newHTTP(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
		chunk := make([]byte, 32<<10)
		copy(chunk, []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}) // SEQUENCE of ~2 GiB
		for sent := int64(0); sent < total; {
			select {
			case <-done:
				return
			case <-r.Context().Done():
				return
			default:
			}
			n := min(int64(len(chunk)), total-sent)
			m, err := w.Write(chunk[:n])
			if written != nil {
				written.Add(int64(m))
			}
			if err != nil {
				return
			}
			sent += int64(m)
			clear(chunk[:6])
		}
	})
	return srv.URL + "/issuer.crt"
}

// ServeAIAHang returns an AIA URL whose server accepts the request and
// never answers (until the client gives up or the test ends).
func ServeAIAHang(t testing.TB, hits *atomic.Int64) string {
	t.Helper()
	srv := newHTTP(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		if hits != nil {
			hits.Add(1)
		}
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	return srv.URL + "/issuer.crt"
}
