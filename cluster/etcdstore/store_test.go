package etcdstore_test

import (
	"testing"

	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// servers are the etcds the store is tested on: the embedded v3.7 (shared
// by the package's tests) and Debian's 3.4 binary, which operators run.
var servers = []struct {
	name  string
	start func(*testing.T) *etcdlab.Server
}{
	{"embedded-3.7", func(*testing.T) *etcdlab.Server { return etcdlab.Shared() }},
	{"debian-3.4", func(t *testing.T) *etcdlab.Server { return etcdlab.StartBinary(t) }},
}

// A node's service on etcd keeps the watch.Service contract.
func TestConformance(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			s := srv.start(t)
			watchtest.Conformance(t, func(t *testing.T) watch.Service {
				svc := join(t, s.Client(t), testKeys(t), "a", watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe, MCP: watchtest.MCP}}, nil)
				owning(t, svc)
				return svc
			})
		})
	}
}
