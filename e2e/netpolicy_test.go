package e2e

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// countingTLS serves the lab's valid certificate on loopback and counts the
// TCP connections it accepts, to prove that a refused target is never
// dialled.
func countingTLS(t *testing.T, l *lab) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	cfg := &tls.Config{Certificates: []tls.Certificate{l.pki.Leaf(testlab.LeafOpts{})}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					buf := make([]byte, 1)
					_, _ = tc.Read(buf) // until the prober hangs up
				}
			}()
		}
	}()
	return ln.Addr().String(), &n
}

func hasFinding(r map[string]any, code string) bool {
	_, ok := findingCodes(r)[code]
	return ok
}

// TestOutboundPolicy (SSRF) through serve: the cloud metadata
// address is refused by default with target_blocked; --deny-private refuses
// a loopback target without dialling it; --allow-cidr re-allows it.
func TestOutboundPolicy(t *testing.T) {
	l := newLab(t)
	addr, dials := countingTLS(t, l)
	target := hostTarget(addr)

	t.Run("default", func(t *testing.T) {
		c := stdioClient(t, legacyVersion, l.serveArgs())
		res := call(t, c, "check_tls", map[string]any{"target": "metadata.example:443", "ip": "169.254.169.254", "timeout_ms": 5000})
		if res.IsError {
			t.Fatalf("check_tls: %s", text(res))
		}
		r := structured(t, res)
		if r["status"] != "down" || r["reachable"] != false || !hasFinding(r, "target_blocked") {
			t.Errorf("check_tls of 169.254.169.254: %s", text(res))
		}
		// Loopback stays allowed by default (local development, the lab).
		res = call(t, c, "check_tls", map[string]any{"target": target, "ip": "127.0.0.1"})
		if r := structured(t, res); r["status"] != "ok" || hasFinding(r, "target_blocked") {
			t.Errorf("check_tls of a loopback target by default: %s", text(res))
		}
	})

	t.Run("deny-private", func(t *testing.T) {
		c := stdioClient(t, legacyVersion, l.serveArgs("--deny-private"))
		before := dials.Load()
		res := call(t, c, "check_tls", map[string]any{"target": target, "ip": "127.0.0.1"})
		if res.IsError {
			t.Fatalf("check_tls: %s", text(res))
		}
		r := structured(t, res)
		if r["status"] != "down" || !hasFinding(r, "target_blocked") {
			t.Errorf("check_tls of loopback with --deny-private: %s", text(res))
		}
		if n := dials.Load() - before; n != 0 {
			t.Errorf("a refused target was dialled %d times", n)
		}
		// A watch gets the same verdict: down, never dialled.
		res = call(t, c, "watch_endpoint", map[string]any{"target": target, "ip": "127.0.0.1", "schedule": "@every 1h"})
		if res.IsError {
			t.Fatalf("watch_endpoint: %s", text(res))
		}
		if rep, _ := structured(t, res)["last_report"].(map[string]any); !hasFinding(rep, "target_blocked") {
			t.Errorf("watch_endpoint with --deny-private: %s", text(res))
		}
		if n := dials.Load() - before; n != 0 {
			t.Errorf("a refused watch target was dialled %d times", n)
		}
	})

	t.Run("allow-cidr", func(t *testing.T) {
		c := stdioClient(t, legacyVersion, l.serveArgs("--deny-private", "--allow-cidr", "127.0.0.0/8"))
		res := call(t, c, "check_tls", map[string]any{"target": target, "ip": "127.0.0.1"})
		if r := structured(t, res); res.IsError || r["status"] != "ok" || hasFinding(r, "target_blocked") {
			t.Errorf("check_tls of loopback with --deny-private --allow-cidr 127.0.0.0/8: %s", text(res))
		}
		// The metadata range stays refused whatever else is allowed.
		res = call(t, c, "check_tls", map[string]any{"target": "metadata.example:443", "ip": "169.254.169.254", "timeout_ms": 5000})
		if r := structured(t, res); !hasFinding(r, "target_blocked") {
			t.Errorf("check_tls of 169.254.169.254 with --allow-cidr 127.0.0.0/8: %s", text(res))
		}
	})
}
