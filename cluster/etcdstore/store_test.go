package etcdstore_test

import (
	"testing"

	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// A node's service on etcd keeps the watch.Service contract.
func TestConformance(t *testing.T) {
	watchtest.Conformance(t, func(t *testing.T) watch.Service {
		cli := etcdlab.Shared().Client(t)
		s := join(t, cli, testKeys(t), "a", watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe}}, nil)
		owning(t, s)
		return s
	})
}
