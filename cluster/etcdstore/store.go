// Package etcdstore keeps tlswatch's watches in etcd, so that several
// nodes share them: it implements watch.Store (with watch.RemoteChanges,
// watch.Ownership and watch.Staleness) and watch.Outbox on the primitives
// of package cluster, and Open runs a node's watch engine on it.
//
// Reads come from the node's Mirror of the keyspace: every node answers
// list_watches, the resources and the alert feed from memory, and keeps
// answering (marked stale) while etcd is unreachable. Writes go through one
// Batcher per process:
//
//   - A scheduled probe's write is fenced on the shard claim of its watch
//     and conditional on the watch's state key being at the revision the
//     engine's evaluation started from (store.Record.Rev). A write that
//     loses either is not applied: the new owner, or the engine after it
//     re-read the watch, probes again and decides again, so a stage alert
//     or an outage is recorded, and queued, once.
//   - Add and Remove may run on any node (or a command-line process): they
//     are conditional on the state key alone.
//   - Alert feed entries take numbers from one cluster-wide sequence in the
//     Txn that records their cause, so the feed is one ordered list on
//     every node and a cursor is a number.
//   - Alert deliveries are queued per shard in the Txn of their cause and
//     delivered by the node holding the shard (Outbox).
//
// Writes of other processes reach this one through the Mirror's events:
// each becomes a watch.Change (with the events of its feed entries) for
// the engine, which follows the watch and tells its subscribers.
package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// Config configures a Store.
type Config struct {
	Client *clientv3.Client // required
	Keys   cluster.Keyspace // zero: cluster.DefaultPrefix
	// Node is the cluster membership of this process: its claims fence the
	// scheduled writes and select the outbox it delivers. Nil for a
	// command-line process, which owns nothing and only adds and removes.
	Node *cluster.Node
	// Writer names this process's writer key when Node is nil.
	Writer string
	Logger *slog.Logger
	// ProgressEvery paces the mirror's currency checks (see
	// cluster.MirrorOptions).
	ProgressEvery time.Duration
	// BatchInterval is how long routine writes wait to share a Txn
	// (cluster.DefaultBatchInterval when 0). The engine groups its own
	// writes; this only matters for writes outside it.
	BatchInterval time.Duration
	// Timeout bounds each etcd request of Add and Remove, and of outbox
	// updates. Default 5s.
	Timeout time.Duration
}

// Store is watch.Store on etcd. Methods are safe for concurrent use.
type Store struct {
	cfg    Config
	cli    *clientv3.Client
	keys   cluster.Keyspace
	node   *cluster.Node
	log    *slog.Logger
	shards int
	origin string // this process, in the values it writes
	mirror *cluster.Mirror
	batch  *cluster.Batcher
	lease  clientv3.LeaseID // of the writer key of a command-line process

	mu     sync.Mutex
	own    map[string]chain // per watch: what this process last wrote
	subs   map[int]func(watch.Change)
	nextID int
	gained []func(func(string) bool)
	active map[int]int64 // shard -> claim revision, once the mirror caught up
	states map[string]cachedState

	ready   chan struct{}
	entryID uint64 // outbox entry ids: origin bits and a counter (under mu)

	claimsWG sync.WaitGroup
	closed   chan struct{}
	closing  bool // set under mu by Close; no claim starts after it
}

// chain remembers the latest write of a watch by this process: a write
// based on the record at base (the engine has not re-read it since) is
// expected to find cur, its own previous write.
type chain struct{ base, cur int64 }

type cachedState struct {
	rev int64
	st  *stateV
}

var (
	_ watch.Store         = (*Store)(nil)
	_ watch.RemoteChanges = (*Store)(nil)
	_ watch.Ownership     = (*Store)(nil)
	_ watch.Staleness     = (*Store)(nil)
)

// Open loads the keyspace into a mirror and starts following it. With a
// Node, call Claims with every ownership change of the node (Open takes
// the claims it holds already).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("etcdstore: Config.Client is nil")
	}
	if cfg.Keys.Prefix() == "" {
		cfg.Keys, _ = cluster.NewKeyspace("")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	s := &Store{cfg: cfg, cli: cfg.Client, keys: cfg.Keys, node: cfg.Node, log: cfg.Logger,
		origin: rand.Text()[:12], own: make(map[string]chain), subs: make(map[int]func(watch.Change)),
		active: make(map[int]int64), states: make(map[string]cachedState),
		ready: make(chan struct{}, 1), closed: make(chan struct{})}
	var b [4]byte
	rand.Read(b[:])
	s.entryID = uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) start(ctx context.Context) error {
	bcfg := cluster.BatcherConfig{Client: s.cli, Stamp: func() string { return s.origin + "-" + rand.Text()[:8] },
		Interval: s.cfg.BatchInterval, Timeout: s.cfg.Timeout}
	if s.node != nil {
		s.shards = s.node.Shards()
		bcfg = s.node.BatcherConfig(s.cfg.BatchInterval)
	} else {
		var err error
		if s.shards, err = cluster.LoadMeta(ctx, s.cli, s.keys, 0); err != nil {
			return err
		}
		// A short-lived writer's stamp key goes with it.
		g, err := s.cli.Grant(ctx, 60)
		if err != nil {
			return fmt.Errorf("etcdstore: grant a lease: %w", err)
		}
		s.lease = g.ID
		bcfg.Writer, bcfg.WriterLease = s.keys.Writer(s.cfg.Writer), g.ID
	}
	bcfg.SeqKey = s.keys.FeedSeq()
	skip := []string{s.keys.Prefix() + "history/", s.keys.Prefix() + "writers/", s.keys.Members(), s.keys.Shards()}
	m, err := cluster.NewMirror(ctx, s.cli, s.keys.Prefix(), cluster.MirrorOptions{
		OnEvents: s.onEvents, ProgressEvery: s.cfg.ProgressEvery, Logger: s.log,
		Skip: func(k string) bool {
			for _, p := range skip {
				if strings.HasPrefix(k, p) {
					return true
				}
			}
			return false
		},
	})
	if err != nil {
		if s.lease != 0 {
			s.cli.Revoke(context.WithoutCancel(ctx), s.lease)
		}
		return fmt.Errorf("etcdstore: %w", err)
	}
	s.mirror = m
	s.batch = cluster.NewBatcher(bcfg)
	if s.node != nil {
		s.Claims(cluster.Change{Acquired: s.node.Claims()})
	}
	return nil
}

// Close commits what is pending and stops following etcd. The client and
// the node stay the caller's.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	close(s.closed)
	s.claimsWG.Wait()
	s.batch.Close()
	s.mirror.Close()
	if s.lease != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		s.cli.Revoke(ctx, s.lease)
	}
	return nil
}

// Shards is the keyspace's shard count.
func (s *Store) Shards() int { return s.shards }

// StaleSince reports whether the local copy may be behind etcd, and since
// when (the last time it was known current).
func (s *Store) StaleSince() (time.Time, bool) {
	stale, asOf := s.mirror.Stale()
	return asOf, stale
}

// state is the decoded state of a watch (cached by revision), nil when
// it has none.
func (s *Store) state(id string) (*stateV, int64, error) {
	kv, ok := s.mirror.Get(s.keys.State(id))
	if !ok {
		return nil, 0, nil
	}
	s.mu.Lock()
	c, hit := s.states[id]
	s.mu.Unlock()
	if hit && c.rev == kv.ModRev {
		return c.st, kv.ModRev, nil
	}
	st, err := decodeState(kv.Value)
	if err != nil {
		return nil, 0, fmt.Errorf("etcdstore: watch %s: %w", id, err)
	}
	s.mu.Lock()
	s.states[id] = cachedState{rev: kv.ModRev, st: st}
	s.mu.Unlock()
	return st, kv.ModRev, nil
}

// record is a watch's record as the mirror holds it; Rev is its state's
// revision.
func (s *Store) record(id string) (store.Record, *stateV, error) {
	spec, ok := s.mirror.Get(s.keys.Watch(id))
	if !ok {
		return store.Record{}, nil, store.ErrNotFound
	}
	st, rev, err := s.state(id)
	if err != nil {
		return store.Record{}, nil, err
	}
	r, err := merge(spec.Value, st)
	if err != nil {
		return store.Record{}, nil, fmt.Errorf("etcdstore: watch %s: %w", id, err)
	}
	r.Rev = rev
	return r, st, nil
}

// ids lists the watches, in id order.
func (s *Store) ids() []string {
	var out []string
	p := s.keys.Watches()
	s.mirror.Range(p, func(k string, _ cluster.KV) bool {
		out = append(out, strings.TrimPrefix(k, p))
		return true
	})
	sort.Strings(out)
	return out
}

// ForEach calls fn with every record that decodes, in id order, and
// returns those that do not: one bad record must not keep this node from
// loading the others. They stay in etcd as they are (the keyspace has no
// quarantine); the engine logs them.
func (s *Store) ForEach(fn func(store.Record) error) ([]store.Quarantined, error) {
	var bad []store.Quarantined
	for _, id := range s.ids() {
		r, _, err := s.record(id)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			bad = append(bad, store.Quarantined{ID: id, Reason: err.Error()})
			continue
		}
		if err := fn(r); err != nil {
			return bad, err
		}
	}
	return bad, nil
}

// Get returns one watch with its latest Report.
func (s *Store) Get(id string) (store.View, error) {
	r, st, err := s.record(id)
	if err != nil {
		return store.View{}, err
	}
	return store.View{Record: r, LastReport: s.lastReport(&r, st)}, nil
}

// ListPage returns up to limit watches with their latest Report after the
// id after, in id order, leaving out (and naming) those that do not decode.
func (s *Store) ListPage(after string, limit int) (store.Page, error) {
	ids := s.ids()
	start := sort.SearchStrings(ids, after)
	if start < len(ids) && ids[start] == after {
		start++
	}
	var p store.Page
	end := min(start+limit, len(ids))
	for _, id := range ids[start:end] {
		v, err := s.Get(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			p.Undecodable = append(p.Undecodable, id)
		default:
			p.Views = append(p.Views, v)
		}
	}
	if end < len(ids) {
		p.Next = ids[end-1]
	}
	return p, nil
}

// ExpiringIDs lists the watches whose leaf expires before until (soonest
// first), then those that are down (in id order).
func (s *Store) ExpiringIDs(until time.Time) ([]string, error) {
	type hit struct {
		id string
		at time.Time
	}
	var exp []hit
	var down []string
	for _, id := range s.ids() {
		st, _, err := s.state(id)
		if err != nil {
			return nil, err
		}
		switch {
		case st == nil:
		case !st.NotAfter.IsZero() && st.NotAfter.Before(until):
			exp = append(exp, hit{id, st.NotAfter})
		case st.State == watch.StateDown:
			down = append(down, id)
		}
	}
	sort.SliceStable(exp, func(i, j int) bool { return exp[i].at.Before(exp[j].at) })
	out := make([]string, 0, len(exp)+len(down))
	for _, h := range exp {
		out = append(out, h.id)
	}
	return append(out, down...), nil
}

// Alert returns the alert state of one certificate of a watch.
func (s *Store) Alert(id, fingerprint string) (store.Alert, bool, error) {
	kv, ok := s.mirror.Get(s.keys.Alert(id, fingerprint))
	if !ok {
		return store.Alert{}, false, nil
	}
	var a store.Alert
	if err := json.Unmarshal(kv.Value, &a); err != nil {
		return store.Alert{}, false, fmt.Errorf("etcdstore: alert state of %s: %w", id, err)
	}
	return a, true, nil
}
