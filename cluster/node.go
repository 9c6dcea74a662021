package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/probe"
)

// DefaultTTL is the lease of a node's membership and shard claims: a dead
// node's shards are taken over within it.
const DefaultTTL = 10 * time.Second

// MinTTL is the shortest lease accepted. etcd rounds leases to seconds and
// raises those under about 1.5 election timeouts (2 s with its defaults).
const MinTTL = 2 * time.Second

// schema is the keyspace layout version, in the meta key.
const schema = 1

// Config configures a Node. Zero values take the defaults.
type Config struct {
	Client *clientv3.Client // required
	Keys   Keyspace         // zero: DefaultPrefix
	Name   string           // required; unique per live node (CheckNode)
	// TTL of the node's lease; DefaultTTL when 0. Whole seconds.
	TTL time.Duration
	// Shards is the shard count of a new keyspace (DefaultShards when 0).
	// A keyspace keeps the count it was created with; a different non-zero
	// value here is an error rather than a silent reshuffle.
	Shards int
	Logger *slog.Logger
	// OnChange is told about shards acquired and lost, in order, from the
	// node's own goroutine: it MUST NOT block for long. When it hears of a
	// loss, the lost claims' contexts are already cancelled.
	OnChange func(Change)
}

// Change is one step of the node's ownership.
type Change struct {
	Acquired []Claim
	Lost     []int
}

// Claim is this node's hold on one shard.
type Claim struct {
	Shard int
	Key   string
	// Rev is the claim key's mod revision: the fence of every write made
	// under this claim (see Fence).
	Rev int64
	// At is when the claim was acquired, by the node's clock.
	At time.Time
	// Ctx is cancelled as soon as the claim is lost, released, or cannot be
	// proven any more (etcd unreachable): probes under it stop at once.
	Ctx context.Context
}

// Status is what a node knows of itself, for logs, metrics and the
// staleness mark of reads.
type Status struct {
	// Connected: the node holds a lease it has renewed within its TTL.
	Connected bool
	// Since is when Connected last changed.
	Since   time.Time
	Shards  int      // shards held now
	Members []string // live nodes, as last seen
}

// Node is one tlswatch process in a cluster: it keeps a leased membership
// key, claims the shards that rendezvous hashing gives it among the live
// members, and gives them up when it cannot prove its lease. Methods are
// safe for concurrent use.
type Node struct {
	cfg    Config
	cli    *clientv3.Client
	keys   Keyspace
	shards int
	ttl    time.Duration
	log    *slog.Logger

	changeMu sync.Mutex // serialises changes of claims with their OnChange
	mu       sync.Mutex // guards claims and status
	claims   map[int]*held
	status   Status
	lease    clientv3.LeaseID // of the latest session

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	stamps   atomic.Uint64
	stampPfx string // random per process: stamps never repeat across restarts
}

type held struct {
	Claim
	cancel context.CancelFunc
}

type meta struct {
	Schema int `json:"schema"`
	Shards int `json:"shards"`
}

// Start validates cfg, reads (or creates) the keyspace's meta key, and
// starts the node's loop in the background: it joins as soon as it can and
// keeps rejoining after every outage until Close.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Client == nil {
		return nil, errors.New("cluster: Config.Client is nil")
	}
	if err := CheckNode(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Keys.p == "" {
		cfg.Keys, _ = NewKeyspace("")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < MinTTL || cfg.TTL%time.Second != 0 {
		return nil, &probe.FieldError{Field: "ttl", Reason: fmt.Sprintf("%s: whole seconds, at least %s", cfg.TTL, MinTTL)}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, cli: cfg.Client, keys: cfg.Keys, ttl: cfg.TTL, claims: make(map[int]*held),
		log: cfg.Logger.With("node", cfg.Name), done: make(chan struct{})}
	var err error
	if n.shards, err = n.loadMeta(ctx, cfg.Shards); err != nil {
		return nil, err
	}
	n.status.Since = time.Now()
	n.stampPfx = rand.Text()[:12]
	n.ctx, n.cancel = context.WithCancel(context.Background())
	go n.run()
	return n, nil
}

// loadMeta creates the meta key of a new keyspace, or reads the shard count
// of an existing one.
func (n *Node) loadMeta(ctx context.Context, want int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, n.ttl)
	defer cancel()
	return LoadMeta(ctx, n.cli, n.keys, want)
}

// LoadMeta creates the meta key of a new keyspace with want shards
// (DefaultShards when 0), or reads the shard count of an existing one; a
// different non-zero want is an error rather than a silent reshuffle.
func LoadMeta(ctx context.Context, cli *clientv3.Client, keys Keyspace, want int) (int, error) {
	if want < 0 || want > 4096 {
		return 0, &probe.FieldError{Field: "shards", Reason: strconv.Itoa(want) + " out of range 1-4096"}
	}
	create := want
	if create == 0 {
		create = DefaultShards
	}
	raw, _ := json.Marshal(meta{Schema: schema, Shards: create})
	key := keys.Meta()
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(raw))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, fmt.Errorf("cluster: read %s: %w", key, err)
	}
	if resp.Succeeded {
		return create, nil
	}
	var m meta
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 || json.Unmarshal(kvs[0].Value, &m) != nil || m.Shards < 1 {
		return 0, fmt.Errorf("cluster: %s holds no valid tlswatch meta: is %s another program's prefix?", key, keys.Prefix())
	}
	if m.Schema > schema {
		return 0, fmt.Errorf("cluster: %s has keyspace schema %d, this binary knows up to %d", keys.Prefix(), m.Schema, schema)
	}
	if want != 0 && want != m.Shards {
		return 0, fmt.Errorf("cluster: %s was created with %d shards, not %d", keys.Prefix(), m.Shards, want)
	}
	return m.Shards, nil
}

// stamp is a new unique id for one batched Txn.
func (n *Node) stamp() string {
	return n.stampPfx + "-" + strconv.FormatUint(n.stamps.Add(1), 10)
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Keys is the node's keyspace.
func (n *Node) Keys() Keyspace { return n.keys }

// Shards is the cluster's shard count.
func (n *Node) Shards() int { return n.shards }

// ShardOf is the shard of a watch id.
func (n *Node) ShardOf(id string) int { return ShardOf(id, n.shards) }

// Owns reports whether this node holds the shard of watch id now, with the
// claim to fence writes and bound probes by.
func (n *Node) Owns(id string) (Claim, bool) { return n.Claim(n.ShardOf(id)) }

// Claim returns the node's claim on shard, if it holds it.
func (n *Node) Claim(shard int) (Claim, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.claims[shard]
	if !ok {
		return Claim{}, false
	}
	return h.Claim, true
}

// Claims lists the shards held now, by shard number.
func (n *Node) Claims() []Claim {
	n.mu.Lock()
	out := make([]Claim, 0, len(n.claims))
	for _, h := range n.claims {
		out = append(out, h.Claim)
	}
	n.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return out
}

// Status reports the node's connection and holdings.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.status
	s.Shards = len(n.claims)
	s.Members = append([]string(nil), s.Members...)
	return s
}

// Lease is the lease of the node's latest session (0 before the first):
// for diagnostics, and for tests that revoke it.
func (n *Node) Lease() clientv3.LeaseID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lease
}

// Close leaves the cluster: claims are cancelled, then the lease is revoked
// so the other nodes take the shards over at once instead of after the TTL.
func (n *Node) Close() error {
	n.cancel()
	<-n.done
	return nil
}
