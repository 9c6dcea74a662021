package etcdlab

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestServers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *Server
	}{
		{"embedded", Start},
		{"debian-binary", StartBinary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.start(t)
			cli := s.Client(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := cli.Put(ctx, "k", "v1"); err != nil {
				t.Fatalf("put: %v", err)
			}
			// An outage and a return keep the data and the port.
			s.Stop()
			s.Start()
			resp, err := cli.Get(ctx, "k")
			if err != nil {
				t.Fatalf("get after restart: %v", err)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
				t.Fatalf("get after restart = %v, want v1", resp.Kvs)
			}
		})
	}
}

func TestProxyPartition(t *testing.T) {
	s := Start(t)
	p := NewProxy(t, s.Endpoint)
	cli := NewClient(t, p.Endpoint)
	put := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := cli.Put(ctx, "k", "v")
		return err
	}
	if err := put(10 * time.Second); err != nil {
		t.Fatalf("put through the proxy: %v", err)
	}
	p.Partition()
	if err := put(500 * time.Millisecond); err == nil {
		t.Fatal("put succeeded across a partition")
	}
	p.Heal()
	if err := put(20 * time.Second); err != nil {
		t.Fatalf("put after heal: %v", err)
	}
}
