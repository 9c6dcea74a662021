package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultBatchInterval is how long routine writes (a probe result that
// changes nothing that matters) wait to share a Txn with others.
const DefaultBatchInterval = time.Second

// Batcher groups a node's fenced writes into few Txns: the probe results of
// many watches commit together once per interval, each Txn fenced on every
// shard it writes for. A write that must not wait (a state change that fires
// an alert) is added as urgent and flushes at once. Writes commit in the
// order they were added. Methods are safe for concurrent use.
//
// Each write's keys must be exact keys (no ranges), so the Batcher can keep
// two writes of one key out of one Txn (etcd refuses that); a range delete
// goes through Node.Commit.
type Batcher struct {
	n        *Node
	interval time.Duration

	mu      sync.Mutex
	pending []batchItem
	closed  bool

	kick chan struct{}
	done chan struct{}

	// loseAnswer, set by tests only, discards etcd's answer to an attempt
	// that landed, as a broken connection would.
	loseAnswer func(attempt int) bool
}

type batchItem struct {
	claim Claim
	ops   []clientv3.Op
	done  func(error)
}

// NewBatcher starts a Batcher of the node's writes; interval 0 means
// DefaultBatchInterval. Close it before closing the node.
func (n *Node) NewBatcher(interval time.Duration) *Batcher {
	if interval <= 0 {
		interval = DefaultBatchInterval
	}
	b := &Batcher{n: n, interval: interval, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go b.loop()
	return b
}

// Add queues ops to commit under claim. done, which may be nil, is called
// once with the outcome, from the Batcher's goroutine: nil when committed,
// ErrNotOwner when the claim was gone (nothing written), or another error
// when the Batcher closed before etcd answered.
func (b *Batcher) Add(claim Claim, ops []clientv3.Op, urgent bool, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	if len(ops) > maxTxnOps-1 {
		done(fmt.Errorf("cluster: %d operations in one write, at most %d fit a Txn", len(ops), maxTxnOps-1))
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		done(errors.New("cluster: batcher closed"))
		return
	}
	b.pending = append(b.pending, batchItem{claim: claim, ops: ops, done: done})
	b.mu.Unlock()
	if urgent {
		b.Flush()
	}
}

// Flush asks for the pending writes to be committed now.
func (b *Batcher) Flush() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Close commits what is pending (while the claims stand) and stops.
func (b *Batcher) Close() {
	b.mu.Lock()
	already := b.closed
	b.closed = true
	b.mu.Unlock()
	if !already {
		b.Flush()
	}
	<-b.done
}

func (b *Batcher) loop() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.kick:
		}
		b.mu.Lock()
		items, closed := b.pending, b.closed
		b.pending = nil
		b.mu.Unlock()
		b.flush(items)
		if closed {
			return
		}
	}
}

// flush commits items in order, in Txns within etcd's limits.
func (b *Batcher) flush(items []batchItem) {
	for len(items) > 0 {
		n := chunkLen(items)
		b.commit(items[:n])
		items = items[n:]
	}
}

// chunkLen is how many leading items fit one Txn: at most maxTxnOps
// operations and comparisons with the writer stamp's one of each, and no
// key written twice.
func chunkLen(items []batchItem) int {
	ops := 0
	shards := make(map[int]bool)
	keys := make(map[string]bool)
	for i, it := range items {
		newShard := 0
		if !shards[it.claim.Shard] {
			newShard = 1
		}
		if i > 0 && (ops+len(it.ops) > maxTxnOps-1 || len(shards)+newShard > maxTxnOps-1) {
			return i
		}
		for _, op := range it.ops {
			if keys[string(op.KeyBytes())] && i > 0 {
				return i
			}
		}
		for _, op := range it.ops {
			keys[string(op.KeyBytes())] = true
		}
		shards[it.claim.Shard] = true
		ops += len(it.ops)
	}
	return len(items)
}

// commit writes one chunk. A refused fence fails the whole Txn, so the chunk
// is then retried one shard at a time: the writes of shards still held
// commit, the others get ErrNotOwner. A failure to reach etcd is retried
// until etcd answers or the claims end (the node's lease timer ends them
// within its TTL), so a write is never reported lost while it may land.
func (b *Batcher) commit(chunk []batchItem) {
	live := chunk[:0:0]
	for _, it := range chunk {
		if it.claim.Ctx == nil || it.claim.Ctx.Err() != nil {
			it.done(fmt.Errorf("shard %d: %w", it.claim.Shard, ErrNotOwner))
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return
	}
	err := b.txn(live)
	if errors.Is(err, ErrNotOwner) && len(live) > 1 {
		for _, group := range byShard(live) {
			b.finish(group, b.txn(group))
		}
		return
	}
	b.finish(live, err)
}

func (b *Batcher) finish(items []batchItem, err error) {
	for _, it := range items {
		it.done(err)
	}
}

func byShard(items []batchItem) [][]batchItem {
	idx := make(map[int]int)
	var groups [][]batchItem
	for _, it := range items {
		i, ok := idx[it.claim.Shard]
		if !ok {
			i = len(groups)
			idx[it.claim.Shard] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], it)
	}
	return groups
}

// txn commits items in one fenced Txn, retrying while etcd cannot be reached
// and the claims stand. Each Txn also stamps the node's writer key with an
// id of its own; a retry commits only if that stamp is not there yet, so an
// attempt that landed without its answer reaching the node is never applied
// twice (an outbox entry delivered and deleted in between would come back).
func (b *Batcher) txn(items []batchItem) error {
	seen := make(map[int]bool)
	var cmps []clientv3.Cmp
	var claims []Claim
	var ops []clientv3.Op
	for _, it := range items {
		if !seen[it.claim.Shard] {
			seen[it.claim.Shard] = true
			claims = append(claims, it.claim)
			cmps = append(cmps, it.claim.Fence())
		}
		ops = append(ops, it.ops...)
	}
	writer := b.n.keys.Writer(b.n.Name())
	stamp := b.n.stamp()
	ops = append(ops, clientv3.OpPut(writer, stamp))
	fences := len(cmps)
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), b.n.ttl/3)
		resp, err := b.n.cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(writer)).Commit()
		cancel()
		if err == nil && b.loseAnswer != nil && b.loseAnswer(attempt) {
			err = errors.New("answer lost")
		}
		if err == nil {
			landed, absent := stamped(resp, stamp)
			switch {
			case resp.Succeeded || landed:
				return nil
			case absent && len(cmps) > fences:
				// etcd fails a Value comparison on a missing key: no
				// stamp at all, so no attempt landed; retry plainly.
				cmps = cmps[:fences]
				continue
			}
			return ErrNotOwner
		}
		// From now on the outcome of an attempt may be unknown.
		if len(cmps) == fences {
			cmps = append(cmps, clientv3.Compare(clientv3.Value(writer), "!=", stamp))
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
		for _, c := range claims {
			if c.Ctx.Err() != nil {
				return fmt.Errorf("%w (an earlier attempt may have landed: %v)", ErrNotOwner, err)
			}
		}
	}
}

// stamped reads the writer key from a refused Txn: landed when an earlier
// attempt of this very write stamped it, absent when it does not exist.
func stamped(resp *clientv3.TxnResponse, stamp string) (landed, absent bool) {
	if resp.Succeeded || len(resp.Responses) == 0 {
		return false, false
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return false, true
	}
	return string(kvs[0].Value) == stamp, false
}
