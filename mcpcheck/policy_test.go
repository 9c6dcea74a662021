package mcpcheck

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
)

// dialLog records the dials that passed the outbound policy.
type dialLog struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialLog) control(network, address string, _ syscall.RawConn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addrs = append(d.addrs, address)
	if strings.HasPrefix(address, "169.254.") {
		// Never reached: the policy runs first. Refuse anyway so that a
		// broken policy cannot make this test touch the metadata address.
		return errors.New("test guard: " + address + " passed the policy")
	}
	return nil
}

func (d *dialLog) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.addrs)
}

// TestPolicyAppliesToMCPRequests: the MCP requests dial through the same
// policy and Control as the TLS probe, and a refused target gets neither.
func TestPolicyAppliesToMCPRequests(t *testing.T) {
	pki := testlab.NewPKI(t)
	var hits atomic.Int64
	mcpHandler := newMCPServer()
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mcpHandler.ServeHTTP(w, r)
	}))
	url := labURL(port, "/mcp")

	// Allowed: the MCP requests' dials pass the Control as well.
	var probeOnly, both dialLog
	tg, err := probe.ParseTarget(url, "127.0.0.1", "", 8000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := probe.Run(context.Background(), tg, probe.Options{Now: pki.Now, Roots: pki.Roots(), Control: probeOnly.control}); err != nil {
		t.Fatal(err)
	}
	opts := labOpts(pki)
	opts.Probe.Control = both.control
	r, err := Run(context.Background(), url, opts)
	if err != nil || !r.IsMCP {
		t.Fatalf("allowed: %v, is_mcp %v, findings %v", err, r.IsMCP, codes(r.Findings))
	}
	if both.count() <= probeOnly.count() {
		t.Errorf("%d dials with the MCP check, %d for the probe alone: the MCP requests bypass Control", both.count(), probeOnly.count())
	}

	// Refused by the operator's policy: no TLS probe, no MCP request.
	deny, err := netpolicy.New(netpolicy.Config{DenyPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	before := hits.Load()
	var refused dialLog
	opts = labOpts(pki)
	opts.Probe.Policy, opts.Probe.Control = deny, refused.control
	r, err = Run(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	if f := finding(r, probe.CodeTargetBlocked); f == nil || r.Status != probe.StatusDown || r.IsMCP {
		t.Errorf("refused: status %s is_mcp %v findings %v", r.Status, r.IsMCP, codes(r.Findings))
	}
	if refused.count() != 0 || hits.Load() != before {
		t.Errorf("a refused target was dialled %d times, the server saw %d requests", refused.count(), hits.Load()-before)
	}

	// The cloud metadata address is refused by default.
	opts = labOpts(pki)
	opts.IP = "169.254.169.254"
	opts.TimeoutMS = 1500
	opts.Probe.Control = refused.control
	r, err = Run(context.Background(), "https://metadata.example/mcp", opts)
	if err != nil {
		t.Fatal(err)
	}
	if f := finding(r, probe.CodeTargetBlocked); f == nil || !strings.Contains(f.Message, "169.254.169.254") || refused.count() != 0 {
		t.Errorf("metadata: findings %v, dials %d", codes(r.Findings), refused.count())
	}
}
