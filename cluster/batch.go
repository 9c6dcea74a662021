package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// DefaultBatchInterval is how long routine writes (a probe result that
// changes nothing that matters) wait to share a Txn with others.
const DefaultBatchInterval = time.Second

// ErrConflict: a write's own conditions (Write.Cmps) failed: another writer
// changed what it was based on. Nothing was written.
var ErrConflict = errors.New("cluster: changed by another writer meanwhile")

// Batcher groups fenced writes into few Txns: the probe results of many
// watches commit together once per interval, each Txn fenced on every shard
// it writes for. A write that must not wait (a state change that fires an
// alert) is urgent and flushes at once. Writes commit in the order they
// were submitted. Methods are safe for concurrent use.
//
// Two writes of one key never share a Txn (etcd refuses that): a write
// names its keys by its operations, plus Write.Keys for what a range
// operation covers.
type Batcher struct {
	cfg BatcherConfig

	mu      sync.Mutex
	pending []Write
	closed  bool

	kick chan struct{}
	done chan struct{}

	seq      uint64 // the sequence's value as last seen (loop only)
	seqKnown bool

	// loseAnswer, set by tests only, discards etcd's answer to an attempt
	// that landed, as a broken connection would.
	loseAnswer func(attempt int) bool
}

// BatcherConfig configures NewBatcher.
type BatcherConfig struct {
	Client *clientv3.Client
	// Writer is the key stamped by every Txn of this writer (Keyspace.Writer
	// of its name), so that a retried Txn can tell its earlier attempt
	// landed. One writer per key: a node, or a command-line process.
	Writer string
	// WriterLease, when set, keeps the writer key under a lease (a
	// short-lived process leaves no key behind).
	WriterLease clientv3.LeaseID
	// Stamp returns a new unique stamp for one Txn.
	Stamp func() string
	// Interval is how long routine writes wait (DefaultBatchInterval if 0).
	Interval time.Duration
	// Timeout bounds one attempt (a third of the node's TTL).
	Timeout time.Duration
	// SeqKey is the key of the sequence that Write.Seq draws from: a
	// decimal counter, the last number given out ("" when unused).
	SeqKey string
}

// Write is one write submitted to a Batcher.
type Write struct {
	// Claim fences the write on a shard this node holds. The zero Claim
	// does not fence: Ctx then bounds the retries, and Cmps alone guard it.
	Claim Claim
	Ctx   context.Context
	// Cmps are the write's own conditions, typically that the keys it was
	// computed from are unchanged. If one fails, nothing is written.
	Cmps []clientv3.Cmp
	Ops  []clientv3.Op
	// Keys are keys the write touches that Ops do not name exactly.
	Keys []string
	// Seq asks for Seq consecutive numbers of the sequence; SeqOps builds
	// the operations that use them, given the first. It may be called more
	// than once (a retry draws new numbers) and must depend on first only.
	Seq    int
	SeqOps func(first uint64) []clientv3.Op
	Urgent bool
	// Done, which may be nil, is called once from the Batcher's goroutine:
	// with the revision and the first sequence number of the commit, or an
	// error: ErrNotOwner (the claim was gone), ErrConflict (a Cmp failed),
	// or another error when etcd could not be reached in time. Only nil
	// means written.
	Done func(Result)
}

// Result is the outcome of a Write.
type Result struct {
	Rev   int64  // the revision the write committed at
	First uint64 // the first sequence number drawn (Write.Seq > 0)
	Err   error
}

func (w *Write) ctx() context.Context {
	if w.Claim.Key != "" {
		return w.Claim.Ctx
	}
	return w.Ctx
}

// NewBatcher starts a Batcher of the node's writes; interval 0 means
// DefaultBatchInterval. Close it before closing the node.
func (n *Node) NewBatcher(interval time.Duration) *Batcher {
	return NewBatcher(n.BatcherConfig(interval))
}

// BatcherConfig is the configuration of a Batcher of the node's writes.
func (n *Node) BatcherConfig(interval time.Duration) BatcherConfig {
	return BatcherConfig{Client: n.cli, Writer: n.keys.Writer(n.Name()), Stamp: n.stamp, Interval: interval, Timeout: n.ttl / 3}
}

// NewBatcher starts a Batcher.
func NewBatcher(cfg BatcherConfig) *Batcher {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultBatchInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTTL / 3
	}
	b := &Batcher{cfg: cfg, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go b.loop()
	return b
}

// Add queues ops to commit under claim. done, which may be nil, is called
// once with the outcome (see Write.Done).
func (b *Batcher) Add(claim Claim, ops []clientv3.Op, urgent bool, done func(error)) {
	w := Write{Claim: claim, Ops: ops, Urgent: urgent}
	if done != nil {
		w.Done = func(r Result) { done(r.Err) }
	}
	b.Submit(w)
}

// Submit queues a write.
func (b *Batcher) Submit(w Write) {
	if w.Done == nil {
		w.Done = func(Result) {}
	}
	if w.Claim.Key == "" && w.Ctx == nil {
		w.Done(Result{Err: errors.New("cluster: a write without a claim needs a context")})
		return
	}
	n := len(w.Ops) + len(w.Cmps)
	if w.Seq > 0 {
		n += len(w.SeqOps(0))
	}
	if n > maxTxnOps-4 {
		w.Done(Result{Err: fmt.Errorf("cluster: %d operations and conditions in one write, at most %d fit a Txn", n, maxTxnOps-4)})
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		w.Done(Result{Err: errors.New("cluster: batcher closed")})
		return
	}
	b.pending = append(b.pending, w)
	b.mu.Unlock()
	if w.Urgent {
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
	t := time.NewTicker(b.cfg.Interval)
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
func (b *Batcher) flush(items []Write) {
	for len(items) > 0 {
		n := chunkLen(items)
		b.commit(items[:n])
		items = items[n:]
	}
}

// chunkLen is how many leading items fit one Txn: at most maxTxnOps
// operations and comparisons, with room for the writer stamp, the sequence
// and their conditions, and no key written twice.
func chunkLen(items []Write) int {
	ops, cmps := 0, 0
	shards := make(map[string]bool)
	keys := make(map[string]bool)
	for i, it := range items {
		itOps, itCmps := len(it.Ops), len(it.Cmps)
		if it.Seq > 0 {
			itOps += len(it.SeqOps(0))
		}
		if it.Claim.Key != "" && !shards[it.Claim.Key] {
			itCmps++
		}
		names := it.Keys
		for _, op := range it.Ops {
			names = append(names, string(op.KeyBytes()))
		}
		if i > 0 {
			if ops+itOps > maxTxnOps-2 || cmps+itCmps > maxTxnOps-2 {
				return i
			}
			for _, k := range names {
				if keys[k] {
					return i
				}
			}
		}
		for _, k := range names {
			keys[k] = true
		}
		if it.Claim.Key != "" {
			shards[it.Claim.Key] = true
		}
		ops, cmps = ops+itOps, cmps+itCmps
	}
	return len(items)
}

// commit writes one chunk. Writes whose claim is gone fail at once. When
// the Txn is refused, the claims etcd no longer shows as held fail their
// writes with ErrNotOwner, and the rest is retried in halves until the
// write whose own condition failed is alone (ErrConflict). A failure to
// reach etcd is retried until etcd answers or the writes' contexts end (a
// node's lease timer ends its claims within the TTL), so a write is never
// reported lost while it may land.
func (b *Batcher) commit(chunk []Write) {
	live := chunk[:0:0]
	for _, it := range chunk {
		if err := it.ctx().Err(); err != nil {
			it.Done(Result{Err: refusal(it, err)})
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return
	}
	res, lost := b.txn(live)
	if res.Err != ErrConflict {
		b.finish(live, res)
		return
	}
	var rest []Write
	for _, it := range live {
		if it.Claim.Key != "" && lost[it.Claim.Key] {
			it.Done(Result{Err: fmt.Errorf("shard %d: %w", it.Claim.Shard, ErrNotOwner)})
			continue
		}
		rest = append(rest, it)
	}
	switch {
	case len(rest) == 0:
	case len(rest) < len(live):
		b.commit(rest) // refused for the lost claims alone, maybe
	case len(rest) == 1:
		rest[0].Done(Result{Err: ErrConflict})
	default:
		b.commit(rest[:len(rest)/2])
		b.commit(rest[len(rest)/2:])
	}
}

// refusal is the error of a write whose context ended before it committed.
func refusal(w Write, err error) error {
	if w.Claim.Key != "" {
		return fmt.Errorf("shard %d: %w", w.Claim.Shard, ErrNotOwner)
	}
	return fmt.Errorf("cluster: write not committed: %w", err)
}

func (b *Batcher) finish(items []Write, r Result) {
	first := r.First
	for _, it := range items {
		out := r
		if r.Err == nil && it.Seq > 0 {
			out.First = first
			first += uint64(it.Seq)
		}
		it.Done(out)
	}
}

// txnPlan is one Txn being built for a chunk.
type txnPlan struct {
	claims []Claim
	cmps   []clientv3.Cmp // fences and the writes' own conditions
	ops    []clientv3.Op  // the writes' operations (sequence ones are added per attempt)
	seqN   int
}

func (b *Batcher) plan(items []Write) txnPlan {
	var p txnPlan
	seen := make(map[string]bool)
	for _, it := range items {
		if c := it.Claim; c.Key != "" && !seen[c.Key] {
			seen[c.Key] = true
			p.claims = append(p.claims, c)
			p.cmps = append(p.cmps, c.Fence())
		}
	}
	for _, it := range items {
		p.cmps = append(p.cmps, it.Cmps...)
		p.ops = append(p.ops, it.Ops...)
		p.seqN += it.Seq
	}
	return p
}

// attempt is the Txn of one try: the plan, the sequence's numbers drawn
// from what is known of it, and the stamp.
func (b *Batcher) attempt(items []Write, p *txnPlan, stamp string, unsure bool) (clientv3.Op, uint64) {
	cmps := append([]clientv3.Cmp(nil), p.cmps...)
	ops := append([]clientv3.Op(nil), p.ops...)
	first := b.seq + 1
	if p.seqN > 0 {
		if b.seqKnown && b.seq > 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.Value(b.cfg.SeqKey), "=", strconv.FormatUint(b.seq, 10)))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(b.cfg.SeqKey), "=", 0))
		}
		next := first
		for _, it := range items {
			if it.Seq > 0 {
				ops = append(ops, it.SeqOps(next)...)
				next += uint64(it.Seq)
			}
		}
		ops = append(ops, clientv3.OpPut(b.cfg.SeqKey, strconv.FormatUint(next-1, 10)))
	}
	ops = append(ops, clientv3.OpPut(b.cfg.Writer, stamp, clientv3.WithLease(b.cfg.WriterLease)))
	if unsure {
		// An earlier attempt may have landed: commit only if it did not.
		cmps = append(cmps, clientv3.Compare(clientv3.Value(b.cfg.Writer), "!=", stamp))
	}
	els := []clientv3.Op{clientv3.OpGet(b.cfg.Writer)}
	if p.seqN > 0 {
		els = append(els, clientv3.OpGet(b.cfg.SeqKey))
	}
	for _, c := range p.claims {
		els = append(els, clientv3.OpGet(c.Key))
	}
	return clientv3.OpTxn(cmps, ops, els), first
}

// txn commits items in one Txn, retrying while etcd cannot be reached and
// the items' contexts last. Each Txn also stamps the writer key with an id
// of its own; a retry commits only if that stamp is not there yet, so an
// attempt that landed without its answer reaching us is never applied
// twice (an outbox entry delivered and deleted in between would come back).
// A refused Txn reports ErrConflict with the claims that etcd showed lost;
// the sequence having moved on is retried here with new numbers.
func (b *Batcher) txn(items []Write) (Result, map[string]bool) {
	p := b.plan(items)
	stamp := b.cfg.Stamp()
	unsure := false
	backoff := 50 * time.Millisecond
	for try := 0; ; try++ {
		op, first := b.attempt(items, &p, stamp, unsure)
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
		resp, err := b.cfg.Client.Do(ctx, op)
		cancel()
		if err == nil && b.loseAnswer != nil && b.loseAnswer(try) {
			err = errors.New("answer lost")
		}
		if err == nil {
			t := resp.Txn()
			if t.Succeeded {
				b.seq += uint64(p.seqN)
				return Result{Rev: t.Header.Revision, First: first}, nil
			}
			refused := b.refused(t, &p, stamp)
			switch {
			case refused.landed:
				// The sequence is read only from refused answers, and an
				// answered attempt after the landed one is this one: it
				// drew the same numbers.
				b.seq = first + uint64(p.seqN) - 1
				return Result{Rev: refused.landedRev, First: first}, nil
			case refused.absentStamp && unsure:
				unsure = false // no stamp at all: nothing landed
				continue
			case refused.seqMoved:
				continue
			}
			return Result{Err: ErrConflict}, refused.lost
		}
		if refusedForGood(err) {
			// etcd refused the request itself (malformed, too large, not
			// allowed): nothing landed, and a retry would fare the same.
			return Result{Err: fmt.Errorf("cluster: etcd refused the write: %w", err)}, nil
		}
		// From now on the outcome of an attempt may be unknown.
		unsure = true
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
		for _, it := range items {
			if cerr := it.ctx().Err(); cerr != nil {
				e := refusal(it, cerr)
				return Result{Err: fmt.Errorf("%w (an earlier attempt may have landed: %v)", e, err)}, nil
			}
		}
	}
}

// refusedTxn is what the Else branch of a refused Txn tells.
type refusedTxn struct {
	landed      bool // an earlier attempt of this very Txn stamped the writer key
	landedRev   int64
	absentStamp bool // the writer key does not exist
	seqMoved    bool // the sequence is not what the attempt assumed
	lost        map[string]bool
}

func (b *Batcher) refused(t *clientv3.TxnResponse, p *txnPlan, stamp string) refusedTxn {
	var r refusedTxn
	rs := t.Responses
	if kvs := rs[0].GetResponseRange().Kvs; len(kvs) == 0 {
		r.absentStamp = true
	} else if string(kvs[0].Value) == stamp {
		r.landed, r.landedRev = true, kvs[0].ModRevision
		return r
	}
	rs = rs[1:]
	if p.seqN > 0 {
		var cur uint64
		known := false
		if kvs := rs[0].GetResponseRange().Kvs; len(kvs) == 1 {
			cur, _ = strconv.ParseUint(string(kvs[0].Value), 10, 64)
			known = true
		}
		r.seqMoved = known != (b.seqKnown && b.seq > 0) || cur != b.seq
		b.seq, b.seqKnown = cur, true
		rs = rs[1:]
	}
	r.lost = make(map[string]bool)
	for i, c := range p.claims {
		kvs := rs[i].GetResponseRange().Kvs
		if len(kvs) == 0 || kvs[0].ModRevision != c.Rev {
			r.lost[c.Key] = true
		}
	}
	return r
}

// refusedForGood reports an error of etcd's about the request itself, as
// opposed to one of reaching it.
func refusedForGood(err error) bool {
	var ee rpctypes.EtcdError
	if !errors.As(err, &ee) {
		return false
	}
	switch ee.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied, codes.Unauthenticated, codes.OutOfRange, codes.Unimplemented:
		return true
	}
	return false
}
