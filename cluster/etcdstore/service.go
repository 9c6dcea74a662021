package etcdstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/watch"
)

// NodeConfig configures Join.
type NodeConfig struct {
	Client *clientv3.Client // required; stays the caller's
	Keys   cluster.Keyspace
	// Name is the node's name (--node): it joins the cluster, claims its
	// share of the shards and probes their watches. Empty: a command-line
	// process, which reads, adds and removes watches without joining.
	Name string
	// TTL of the node's lease (cluster.DefaultTTL when 0).
	TTL time.Duration
	// Engine configures the watch engine; Ownership and Hook are set here,
	// and Node for a node (a command-line process may name itself there).
	Engine watch.Config
	// Alerts, when set, queues alerts in the commits of their causes and,
	// on a node, delivers the queue of the shards it holds.
	Alerts        watch.Alerter
	Logger        *slog.Logger
	ProgressEvery time.Duration
}

// Service is a watch.Service on etcd: the engine of one node (or of a
// command-line process) over a Store.
type Service struct {
	*watch.Engine
	store *Store
	node  *cluster.Node

	cancelAlerts context.CancelFunc
	alertsDone   chan struct{}
}

// Join opens the keyspace and, for a named node, joins the cluster and
// starts probing the watches of the shards it comes to hold.
func Join(ctx context.Context, cfg NodeConfig) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	fwd := &claimsForwarder{}
	s := &Service{}
	var err error
	if cfg.Name != "" {
		s.node, err = cluster.Start(ctx, cluster.Config{Client: cfg.Client, Keys: cfg.Keys, Name: cfg.Name, TTL: cfg.TTL,
			Logger: cfg.Logger, OnChange: fwd.changed})
		if err != nil {
			return nil, err
		}
	}
	s.store, err = Open(ctx, Config{Client: cfg.Client, Keys: cfg.Keys, Node: s.node, Writer: "cli-" + rand.Text()[:10],
		Logger: cfg.Logger, ProgressEvery: cfg.ProgressEvery})
	if err != nil {
		s.closeNode()
		return nil, err
	}
	fwd.set(s.store)
	ecfg := cfg.Engine
	if cfg.Name != "" {
		ecfg.Node = cfg.Name // probed_by
	}
	if cfg.Alerts != nil {
		// A command-line process queues the alerts of what it decides
		// too; the nodes holding the shards deliver them.
		ecfg.Hook = cfg.Alerts.Attach(s.store.Outbox())
	}
	if ecfg.RecentEvery == 0 {
		ecfg.RecentEvery = DefaultRecentEvery
	}
	if s.node != nil {
		ecfg.Ownership = s.store
	} else {
		ecfg.NoScheduler = true
	}
	if s.Engine, err = watch.NewEngine(s.store, ecfg); err != nil {
		s.store.Close()
		s.closeNode()
		return nil, fmt.Errorf("etcdstore: %w", err)
	}
	if s.node != nil && cfg.Alerts != nil {
		actx, cancel := context.WithCancel(context.Background())
		s.cancelAlerts, s.alertsDone = cancel, make(chan struct{})
		go func() {
			defer close(s.alertsDone)
			cfg.Alerts.Deliver(actx)
		}()
	}
	return s, nil
}

// Close stops delivering and probing (committing what is pending), leaves
// the cluster so the others take its shards at once, and stops following
// etcd.
func (s *Service) Close() error {
	if s.cancelAlerts != nil {
		s.cancelAlerts()
		<-s.alertsDone
	}
	s.Engine.Close()
	s.store.Close()
	s.closeNode()
	return nil
}

func (s *Service) closeNode() {
	if s.node != nil {
		s.node.Close()
	}
}

// Store is the service's store (for diagnostics and tests).
func (s *Service) Store() *Store { return s.store }

// Node is the service's cluster membership, nil for a command-line
// process.
func (s *Service) Node() *cluster.Node { return s.node }

// claimsForwarder passes a node's ownership changes to the store, holding
// those that come before the store exists.
type claimsForwarder struct {
	mu    sync.Mutex
	st    *Store
	early []cluster.Change
}

func (f *claimsForwarder) changed(c cluster.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil {
		f.early = append(f.early, c)
		return
	}
	f.st.Claims(c)
}

func (f *claimsForwarder) set(st *Store) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	for _, c := range f.early {
		st.Claims(c)
	}
	f.early = nil
}
