package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errRewatch: the watches on members and claims ended; take a new snapshot
// within the same session.
var errRewatch = errors.New("watch ended")

// view is the node's picture of the members and the shard claims.
type view struct {
	members map[string]bool
	holders map[int]holder
}

type holder struct {
	node  string
	lease int64
	rev   int64
}

// serve runs a session until its lease is gone, cannot be proven, or the
// node closes.
func (n *Node) serve(s *session) error {
	for {
		err := n.follow(s)
		if !errors.Is(err, errRewatch) || s.ctx.Err() != nil {
			return err
		}
		// etcd is answering badly; the lease timer bounds how long.
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
	}
}

// follow takes a snapshot of members and claims, then follows their changes,
// reconciling the node's claims after each.
func (n *Node) follow(s *session) error {
	v, rev, err := n.snapshot(s)
	if err != nil {
		return err
	}
	n.checkHeld(v)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	defer cancel()
	mw := n.cli.Watch(wctx, n.keys.Members(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	sw := n.cli.Watch(wctx, n.keys.Shards(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	n.reconcile(s, v)
	retry := time.NewTicker(s.ttl / 2)
	defer retry.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return s.err()
		case wr, ok := <-mw:
			if !ok || wr.Err() != nil {
				return errRewatch
			}
			n.applyMembers(v, wr.Events)
		case wr, ok := <-sw:
			if !ok || wr.Err() != nil {
				return errRewatch
			}
			n.applyShards(v, wr.Events)
		case <-retry.C:
		}
		n.reconcile(s, v)
	}
}

// snapshot reads members and claims at one revision.
func (n *Node) snapshot(s *session) (*view, int64, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.ttl/2)
	defer cancel()
	resp, err := n.cli.Txn(ctx).Then(
		clientv3.OpGet(n.keys.Members(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(n.keys.Shards(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		if s.ctx.Err() == nil {
			return nil, 0, errRewatch
		}
		return nil, 0, s.err()
	}
	v := &view{members: make(map[string]bool), holders: make(map[int]holder)}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		v.members[strings.TrimPrefix(string(kv.Key), n.keys.Members())] = true
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if sh, ok := n.shardOfKey(kv.Key); ok {
			v.holders[sh] = holder{node: string(kv.Value), lease: kv.Lease, rev: kv.ModRevision}
		}
	}
	n.mu.Lock()
	n.status.Members = v.list()
	n.mu.Unlock()
	return v, resp.Header.Revision, nil
}

func (n *Node) shardOfKey(key []byte) (int, bool) {
	sh, err := strconv.Atoi(strings.TrimPrefix(string(key), n.keys.Shards()))
	return sh, err == nil && sh >= 0 && sh < n.shards
}

func (v *view) list() []string {
	out := make([]string, 0, len(v.members))
	for m := range v.members {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

func (n *Node) applyMembers(v *view, evs []*clientv3.Event) {
	for _, ev := range evs {
		name := strings.TrimPrefix(string(ev.Kv.Key), n.keys.Members())
		if ev.Type == mvccpb.DELETE {
			delete(v.members, name)
		} else {
			v.members[name] = true
		}
	}
	n.mu.Lock()
	n.status.Members = v.list()
	n.mu.Unlock()
}

// applyShards follows claims; a claim of the node's that was deleted or
// rewritten by anyone else (its lease expired in etcd, an operator deleted
// it) is lost at once.
func (n *Node) applyShards(v *view, evs []*clientv3.Event) {
	for _, ev := range evs {
		sh, ok := n.shardOfKey(ev.Kv.Key)
		if !ok {
			continue
		}
		if cur, ok := v.holders[sh]; ok && ev.Kv.ModRevision <= cur.rev {
			// Older than what the node already knows: its own claim
			// went ahead of the watch stream.
			continue
		}
		if ev.Type == mvccpb.DELETE {
			delete(v.holders, sh)
		} else {
			v.holders[sh] = holder{node: string(ev.Kv.Value), lease: ev.Kv.Lease, rev: ev.Kv.ModRevision}
		}
	}
	n.checkHeld(v)
}

// checkHeld drops the claims that the view no longer shows as the node's.
func (n *Node) checkHeld(v *view) {
	n.change(func() Change {
		var lost []int
		n.mu.Lock()
		for sh, h := range n.claims {
			if cur, ok := v.holders[sh]; !ok || cur.rev != h.Rev {
				h.cancel()
				delete(n.claims, sh)
				lost = append(lost, sh)
			}
		}
		n.mu.Unlock()
		if len(lost) > 0 {
			n.log.Warn("cluster: shard claims lost", "shards", len(lost))
		}
		sort.Ints(lost)
		return Change{Lost: lost}
	})
}

// dropClaims cancels and forgets every claim, returning their shards.
func (n *Node) dropClaims() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	lost := make([]int, 0, len(n.claims))
	for sh, h := range n.claims {
		h.cancel()
		lost = append(lost, sh)
	}
	clear(n.claims)
	sort.Ints(lost)
	return lost
}

// change applies one change of the claims and tells OnChange about it,
// serialised with every other change: the loop, the lease timer and a
// refused renewal all change claims, and OnChange hears them in order.
func (n *Node) change(fn func() Change) {
	n.changeMu.Lock()
	defer n.changeMu.Unlock()
	c := fn()
	if (len(c.Acquired) > 0 || len(c.Lost) > 0) && n.cfg.OnChange != nil {
		n.cfg.OnChange(c)
	}
}

// reconcile claims the free shards that rendezvous hashing gives this node
// and releases the held ones it gives to another member (one that joined).
// A claim key under the session's lease that the node does not hold (a
// claim Txn whose answer was lost, a release whose delete failed) is adopted
// when the shard is the node's, and deleted again when it is not.
func (n *Node) reconcile(s *session, v *view) {
	if !v.members[n.cfg.Name] {
		return // our member key is not seen yet (or was deleted): claim nothing
	}
	members := v.list()
	var want, release []int
	var stray []holderAt
	n.mu.Lock()
	for sh := 0; sh < n.shards; sh++ {
		mine := ownerOf(sh, members) == n.cfg.Name
		_, have := n.claims[sh]
		h, taken := v.holders[sh]
		ours := taken && h.lease == int64(s.lease)
		switch {
		case have && !mine:
			release = append(release, sh)
		case !have && ours:
			stray = append(stray, holderAt{sh, h.rev, mine})
		case mine && !have && !taken:
			want = append(want, sh)
		}
	}
	n.mu.Unlock()
	if len(release) > 0 {
		n.release(s, release)
	}
	n.strays(s, v, stray)
	if len(want) > 0 {
		n.claim(s, v, want)
	}
}

type holderAt struct {
	shard int
	rev   int64
	mine  bool
}

func (n *Node) strays(s *session, v *view, stray []holderAt) {
	for _, h := range stray {
		if h.mine {
			n.addClaims(s, v, []int{h.shard}, h.rev)
			continue
		}
		c := Claim{Key: n.keys.Shard(h.shard), Rev: h.rev}
		ctx, cancel := context.WithTimeout(s.ctx, s.ttl/3)
		n.cli.Txn(ctx).If(c.Fence()).Then(clientv3.OpDelete(c.Key)).Commit()
		cancel()
	}
}

// maxTxnOps is etcd's default limit of operations (and of comparisons) in
// one Txn (--max-txn-ops, 128 in 3.4 to 3.7).
const maxTxnOps = 128

// claim takes free shards, many per Txn; when one was taken meanwhile the
// Txn fails as a whole and the shards are tried one by one.
func (n *Node) claim(s *session, v *view, shards []int) {
	got := 0
	for len(shards) > 0 {
		chunk := shards[:min(len(shards), maxTxnOps)]
		shards = shards[len(chunk):]
		rev, ok, err := n.claimTxn(s, chunk)
		if err != nil {
			n.log.Debug("cluster: claim shards", "err", err) // retried on the next reconcile
			break
		}
		if ok {
			got += n.addClaims(s, v, chunk, rev)
			continue
		}
		for _, sh := range chunk {
			if rev, ok, err := n.claimTxn(s, []int{sh}); err == nil && ok {
				got += n.addClaims(s, v, []int{sh}, rev)
			}
		}
	}
	if got > 0 {
		n.log.Info("cluster: shards acquired", "shards", got)
	}
}

func (n *Node) claimTxn(s *session, shards []int) (int64, bool, error) {
	cmps := make([]clientv3.Cmp, len(shards))
	puts := make([]clientv3.Op, len(shards))
	for i, sh := range shards {
		key := n.keys.Shard(sh)
		cmps[i] = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		puts[i] = clientv3.OpPut(key, n.cfg.Name, clientv3.WithLease(s.lease))
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.ttl/3)
	defer cancel()
	resp, err := n.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil {
		return 0, false, err
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

// addClaims records claims taken at rev and tells OnChange; none when the
// session ended meanwhile (its claims would be dead on arrival). It returns
// how many it added.
func (n *Node) addClaims(s *session, v *view, shards []int, rev int64) int {
	added := 0
	n.change(func() Change {
		if s.ctx.Err() != nil {
			return Change{}
		}
		out := make([]Claim, 0, len(shards))
		now := time.Now()
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, sh := range shards {
			v.holders[sh] = holder{node: n.cfg.Name, lease: int64(s.lease), rev: rev}
			ctx, cancel := context.WithCancel(s.ctx)
			c := Claim{Shard: sh, Key: n.keys.Shard(sh), Rev: rev, At: now, Ctx: ctx}
			n.claims[sh] = &held{Claim: c, cancel: cancel}
			out = append(out, c)
		}
		added = len(out)
		return Change{Acquired: out}
	})
	return added
}

// release hands shards to the member that now outranks this node: the
// claims are cancelled first (probing stops), then the keys deleted, fenced
// on their revision. The view learns of the deletes from the watch; until
// then the keys count as strays and a second delete is harmless.
func (n *Node) release(s *session, shards []int) {
	var dels []clientv3.Op
	var cmps []clientv3.Cmp
	n.change(func() Change {
		var lost []int
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, sh := range shards {
			h, ok := n.claims[sh]
			if !ok {
				continue // lost meanwhile
			}
			h.cancel()
			delete(n.claims, sh)
			cmps = append(cmps, h.Fence())
			dels = append(dels, clientv3.OpDelete(h.Key))
			lost = append(lost, sh)
		}
		return Change{Lost: lost}
	})
	for i := 0; i < len(dels); i += maxTxnOps {
		j := min(i+maxTxnOps, len(dels))
		ctx, cancel := context.WithTimeout(s.ctx, s.ttl/3)
		_, err := n.cli.Txn(ctx).If(cmps[i:j]...).Then(dels[i:j]...).Commit()
		cancel()
		if err != nil {
			// The keys stay until the lease ends; the new owner waits.
			n.log.Warn("cluster: release shards", "err", err)
		}
	}
	n.log.Info("cluster: shards released to a new member", "shards", len(shards))
}

// ErrNotOwner: a fenced write was refused because the node no longer holds
// (or cannot prove it holds) a shard it wrote for. Nothing was written.
var ErrNotOwner = errors.New("cluster: shard no longer held by this node")

// Fence is the comparison that makes a Txn commit only while the claim
// stands: the claim key still has the revision it was claimed at. A node
// that was paused or cut off past its lease fails it, whatever its clock
// says, because the key was deleted (and maybe claimed again) meanwhile.
func (c Claim) Fence() clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(c.Key), "=", c.Rev)
}

// Commit runs ops in one Txn fenced on every claim given: all of them or
// none. It returns ErrNotOwner when a claim is gone. It does not retry: on
// any other error the outcome is unknown. Writes that fire an alert or
// record a stage go through a Batcher (urgent when they must not wait),
// which retries safely; Commit is for the rest (reads under a fence, range
// deletes of history).
func (n *Node) Commit(ctx context.Context, claims []Claim, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	cmps := make([]clientv3.Cmp, 0, len(claims))
	for _, c := range claims {
		if c.Ctx == nil || c.Ctx.Err() != nil {
			return nil, fmt.Errorf("shard %d: %w", c.Shard, ErrNotOwner)
		}
		cmps = append(cmps, c.Fence())
	}
	resp, err := n.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("cluster: fenced write: %w", err)
	}
	if !resp.Succeeded {
		return resp, ErrNotOwner
	}
	return resp, nil
}
