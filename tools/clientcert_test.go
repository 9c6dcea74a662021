package tools

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// specWatch is a fakeWatch that keeps the Specs it was given.
type specWatch struct {
	*fakeWatch
	mu    sync.Mutex
	specs []watch.Spec
}

func (s *specWatch) Add(ctx context.Context, spec watch.Spec) (watch.Watch, error) {
	s.mu.Lock()
	s.specs = append(s.specs, spec)
	s.mu.Unlock()
	return s.fakeWatch.Add(ctx, spec)
}

// TestClientCertByName: check_tls and inspect_chain present the operator's
// certificate named by client_cert, watch_endpoint stores the name and the
// files it stands for (so another process can load it), and a
// name that was not loaded (or a path) is an isError naming client_cert.
func TestClientCertByName(t *testing.T) {
	cert := tls.Certificate{Certificate: [][]byte{{1}}}
	var (
		mu   sync.Mutex
		seen []*tls.Certificate
	)
	record := func(o probe.Options) {
		mu.Lock()
		seen = append(seen, o.ClientCert)
		mu.Unlock()
	}
	sw := &specWatch{fakeWatch: newFakeWatch(t)}
	h := newHarness(t, Deps{
		ClientCerts: map[string]watch.ClientCert{"partner": {Name: "partner", CertFile: "/etc/tlswatch/partner.crt", KeyFile: "/etc/tlswatch/partner.key", Pair: cert}},
		Watch:       sw,
		Probe: func(ctx context.Context, tg probe.Target, o probe.Options) (probe.Report, error) {
			record(o)
			return fakeProbe(ctx, tg, o)
		},
		InspectChain: func(ctx context.Context, tg probe.Target, o probe.Options) (probe.ChainReport, error) {
			record(o)
			return fakeInspect(ctx, tg, o)
		},
	}, "2025-11-25")

	for _, tool := range []string{"check_tls", "inspect_chain"} {
		if res := h.call(tool, map[string]any{"target": "mtls.example.com", "client_cert": "partner"}); res.IsError {
			t.Fatalf("%s: %s", tool, text(res))
		}
		if res := h.call(tool, map[string]any{"target": "mtls.example.com"}); res.IsError {
			t.Fatalf("%s: %s", tool, text(res))
		}
	}
	mu.Lock()
	if len(seen) != 4 || seen[0] == nil || seen[0].Certificate[0][0] != 1 || seen[1] != nil || seen[2] == nil || seen[3] != nil {
		t.Errorf("client certificates presented: %v", seen)
	}
	mu.Unlock()

	if res := h.call("watch_endpoint", map[string]any{"target": "mtls.example.com", "client_cert": "partner"}); res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	if len(sw.specs) != 1 || sw.specs[0].ClientCert != "partner" || sw.specs[0].ClientCertFile != "/etc/tlswatch/partner.crt" || sw.specs[0].ClientKeyFile != "/etc/tlswatch/partner.key" {
		t.Errorf("watch specs: %+v", sw.specs)
	}

	for _, tool := range []string{"check_tls", "inspect_chain", "watch_endpoint"} {
		for _, name := range []string{"other", "/etc/ssl/private/key.pem"} {
			res := h.call(tool, map[string]any{"target": "mtls.example.com", "client_cert": name})
			if !res.IsError || !strings.HasPrefix(text(res), "client_cert: ") || !strings.Contains(text(res), "loaded: partner") {
				t.Errorf("%s client_cert=%q: isError=%v %q", tool, name, res.IsError, text(res))
			}
		}
	}
	if len(sw.specs) != 1 {
		t.Errorf("a watch was added with an unknown client_cert: %+v", sw.specs)
	}

	// A server without client certificates says how to load one.
	h2 := newHarness(t, Deps{}, "2025-11-25")
	res := h2.call("check_tls", map[string]any{"target": "mtls.example.com", "client_cert": "partner"})
	if !res.IsError || !strings.Contains(text(res), "--client-cert NAME=CERT,KEY") {
		t.Errorf("no certificates loaded: isError=%v %q", res.IsError, text(res))
	}
}
