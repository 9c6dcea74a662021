package testlab

import (
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestHostileServersStop: each hostile server behaves as documented and
// stops cleanly at cleanup even with a client still connected (TestMain
// checks that no goroutine is left).
func TestHostileServersStop(t *testing.T) {
	t.Run("dripper", func(t *testing.T) {
		c, err := net.Dial("tcp", Dripper(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		b := make([]byte, 2)
		start := time.Now()
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 0x16 {
			t.Fatalf("read %x, %v", b, err)
		}
		if time.Since(start) < 500*time.Millisecond {
			t.Errorf("two bytes in %v: not dripping", time.Since(start))
		}
	})
	t.Run("reset", func(t *testing.T) {
		c, err := net.Dial("tcp", ResetAfterHello(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0x16, 3, 1, 0, 1, 0})
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("read succeeded after the reset")
		}
	})
	t.Run("long chain", func(t *testing.T) {
		p := NewPKI(t)
		cert := p.LongChain(5)
		if len(cert.Certificate) != 5 {
			t.Fatalf("%d certificates", len(cert.Certificate))
		}
		inter := x509.NewCertPool()
		for _, der := range cert.Certificate[1:] {
			c, _ := x509.ParseCertificate(der)
			inter.AddCert(c)
		}
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: p.Roots(), Intermediates: inter, CurrentTime: p.Now, DNSName: DefaultHost}); err != nil {
			t.Errorf("long chain does not verify: %v", err)
		}
	})
	t.Run("huge leaf", func(t *testing.T) {
		p := NewPKI(t)
		if n := len(p.HugeLeaf(1 << 20).Certificate[0]); n < 1<<20 {
			t.Errorf("leaf of %d bytes", n)
		}
	})
	t.Run("aia", func(t *testing.T) {
		var hits, written atomic.Int64
		client := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Get(ServeAIARedirectLoop(t, &hits))
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("redirect loop: %v %v", resp, err)
		}
		resp.Body.Close()
		resp, err = client.Get(ServeAIAStream(t, 100<<20, &written))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.CopyN(io.Discard, resp.Body, 1<<20)
		resp.Body.Close()
		if n != 1<<20 || resp.ContentLength != 100<<20 {
			t.Errorf("stream: read %d, content-length %d", n, resp.ContentLength)
		}
		if _, err := client.Get(ServeAIAHang(t, nil)); err == nil {
			t.Errorf("the hanging AIA server answered")
		}
	})
}
