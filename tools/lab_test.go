package tools

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// TestLab runs check_tls and inspect_chain with the real probe engine
// against loopback servers of the test lab.
func TestLab(t *testing.T) {
	p := testlab.NewPKI(t)
	serve := func(o testlab.LeafOpts) string {
		addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{p.Leaf(o)}})
		_, port, _ := strings.Cut(addr, ":")
		return testlab.DefaultHost + ":" + port
	}
	valid := serve(testlab.LeafOpts{})
	expired := serve(testlab.LeafOpts{NotBefore: p.Now.Add(-90 * 24 * time.Hour), NotAfter: p.Now.Add(-3 * 24 * time.Hour)})
	noChain := serve(testlab.LeafOpts{Chain: []*x509.Certificate{}})

	h := newHarness(t, Deps{
		Probe:        probe.Run,
		InspectChain: probe.InspectChain,
		ProbeOptions: probe.Options{Roots: p.Roots(), NoAIA: true},
	}, "2025-11-25")

	res := h.call("check_tls", map[string]any{"target": valid, "ip": "127.0.0.1"})
	if res.IsError {
		t.Fatalf("check_tls valid: %s", text(res))
	}
	r := decode[probe.Report](t, res)
	if r.Status != probe.StatusOK || !r.Trusted || r.Leaf == nil || r.Chain == nil {
		t.Errorf("valid: %s", text(res))
	}
	for _, f := range r.Findings {
		if f.Severity.Rank() >= probe.SeverityWarning.Rank() {
			t.Errorf("valid server has finding %+v", f)
		}
	}
	if !strings.HasPrefix(text(res), valid+" — status ok: trusted certificate, ") {
		t.Errorf("summary: %q", text(res))
	}

	res = h.call("check_tls", map[string]any{"target": expired, "ip": "127.0.0.1"})
	r = decode[probe.Report](t, res)
	if r.Status != probe.StatusDown || r.Leaf == nil || r.Leaf.DaysRemaining >= 0 {
		t.Errorf("expired: %s", text(res))
	}
	if !strings.HasPrefix(text(res), expired+" — status down: expired (") {
		t.Errorf("expired summary: %q", text(res))
	}

	res = h.call("inspect_chain", map[string]any{"target": noChain, "ip": "127.0.0.1", "include_pem": true})
	if res.IsError {
		t.Fatalf("inspect_chain: %s", text(res))
	}
	cr := decode[probe.ChainReport](t, res)
	if len(cr.Certificates) != 1 || !strings.Contains(cr.Certificates[0].PEM, "BEGIN CERTIFICATE") {
		t.Errorf("certificates: %+v", cr.Certificates)
	}
	// Which finding a leaf without its intermediate gets is the probe's
	// business (tested there); here: the verdict and the arrays are shaped.
	if cr.Status != probe.StatusDown || cr.Trusted || cr.Problems == nil || cr.VerifiedPaths == nil {
		t.Errorf("leaf without intermediate: %s", text(res))
	}

	res = h.call("inspect_certificate", map[string]any{"pem": testlab.ChainPEM(p.Leaf(testlab.LeafOpts{})), "host": testlab.DefaultHost})
	if res.IsError {
		t.Fatalf("inspect_certificate: %s", text(res))
	}
	if cr := decode[probe.ChainReport](t, res); len(cr.Certificates) != 2 || !cr.Trusted {
		t.Errorf("inspect_certificate: %s", text(res))
	}
}

// TestNoRevocationArgument: no_revocation really turns the online check off
// (the responder sees no request), and without it the responder is asked.
func TestNoRevocationArgument(t *testing.T) {
	p := testlab.NewPKI(t)
	var hits atomic.Int64
	url := p.ServeOCSP(p.Intermediate, testlab.OCSPGood, &hits)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{p.Leaf(testlab.LeafOpts{OCSPURL: url})}})
	_, port, _ := strings.Cut(addr, ":")
	target := testlab.DefaultHost + ":" + port
	h := newHarness(t, Deps{Probe: probe.Run, ProbeOptions: probe.Options{Roots: p.Roots(), NoAIA: true}}, "2025-11-25")

	r := decode[probe.Report](t, h.call("check_tls", map[string]any{"target": target, "ip": "127.0.0.1", "no_revocation": true}))
	if hits.Load() != 0 || r.Revocation == nil || r.Revocation.Status == "good" {
		t.Fatalf("no_revocation: responder hits %d, revocation %+v", hits.Load(), r.Revocation)
	}
	r = decode[probe.Report](t, h.call("check_tls", map[string]any{"target": target, "ip": "127.0.0.1"}))
	if hits.Load() == 0 || r.Revocation == nil || r.Revocation.Status != "good" {
		t.Fatalf("default: responder hits %d, revocation %+v", hits.Load(), r.Revocation)
	}
}
