package auth

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tlswatch/tlswatch/internal/testidp"
	"github.com/tlswatch/tlswatch/internal/testlab"
)

// No fetch or idle connection may outlive a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testResource = "https://tlswatch.example.com/mcp"

// clock is a settable clock shared by the issuer and the resource server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// rig is an HTTPS issuer on loopback (a lab certificate) and a resource
// server that trusts it, on one clock.
type rig struct {
	pki *testlab.PKI
	idp *testidp.IdP
	rs  *ResourceServer
	clk *clock
}

func newRig(t testing.TB, o testidp.Options, edit func(*Config)) *rig {
	t.Helper()
	pki := testlab.NewPKI(t)
	clk := newClock()
	o.TLS = &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})}}
	o.Now = clk.Now
	idp := testidp.Start(t, o)
	cfg := Config{
		Resource:   testResource,
		Issuers:    []string{idp.Issuer},
		Roots:      pki.Roots(),
		Now:        clk.Now,
		ToolScopes: map[string]string{"list_watches": ScopeRead, "check_tls": ScopeRead, "watch_endpoint": ScopeWrite},
	}
	if edit != nil {
		edit(&cfg)
	}
	rs, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(rs.Close)
	return &rig{pki: pki, idp: idp, rs: rs, clk: clk}
}
