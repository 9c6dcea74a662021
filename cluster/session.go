package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	errLeaseGone    = errors.New("etcd says the lease is gone (revoked or expired)")
	errLeaseUnknown = errors.New("lease not renewed within its TTL (etcd unreachable?)")
)

// session is one lease of the node and what hangs on it. The node trusts
// its lease until validUntil only: the time a renewal was *sent* plus the
// TTL, less a margin. etcd counts the TTL from when it *received* the
// renewal, which is later, so the node always gives up its shards before
// etcd can hand them to anyone else (clock rates aside, which the margin
// covers). A timer of its own ends the session then, whatever the node's
// loop is busy with.
type session struct {
	lease  clientv3.LeaseID
	ttl    time.Duration
	ctx    context.Context // cancelled when the session ends, for any cause
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	validUntil time.Time
	timer      *time.Timer
	cause      error
}

// extend moves validUntil forward after a renewal sent at sent.
func (s *session) extend(sent time.Time) {
	until := sent.Add(s.ttl - margin(s.ttl))
	s.mu.Lock()
	defer s.mu.Unlock()
	if until.After(s.validUntil) {
		s.validUntil = until
		s.timer.Reset(time.Until(until))
	}
}

func (s *session) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cause != nil {
		return s.cause
	}
	return s.ctx.Err()
}

// margin is how much sooner than etcd the node gives its lease up.
func margin(ttl time.Duration) time.Duration { return ttl / 10 }

// run keeps the node in the cluster until Close: a session at a time, each
// ended by a lost lease or an outage, with a backoff between attempts.
func (n *Node) run() {
	defer close(n.done)
	var prev clientv3.LeaseID
	backoff := 100 * time.Millisecond
	for n.ctx.Err() == nil {
		s, err := n.openSession(prev)
		if err != nil {
			if n.ctx.Err() == nil {
				n.log.Warn("cluster: cannot join; not probing until etcd answers", "err", err, "retry_in", backoff)
				n.sleep(backoff)
				backoff = min(backoff*2, n.ttl/2)
			}
			continue
		}
		backoff = 100 * time.Millisecond
		prev = s.lease
		n.mu.Lock()
		n.lease = s.lease
		n.mu.Unlock()
		n.setConnected(true)
		n.log.Info("cluster: joined", "ttl", s.ttl)
		err = n.serve(s)
		n.endSession(s, err)
		n.closeSession(s)
		if n.ctx.Err() != nil {
			n.revoke(s.lease)
			return
		}
	}
}

func (n *Node) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-n.ctx.Done():
	}
}

// setConnected records the node's connection state and reports whether it
// changed.
func (n *Node) setConnected(up bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.status.Connected == up {
		return false
	}
	n.status.Connected = up
	n.status.Since = time.Now()
	return true
}

// revoke ends a lease on the way out, so the others need not wait its TTL.
func (n *Node) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := n.cli.Revoke(ctx, lease); err != nil {
		n.log.Warn("cluster: revoke lease on close; the others take over after its TTL", "err", err)
	}
}

// openSession grants a lease, starts renewing it and registers the node's
// member key under it.
func (n *Node) openSession(prev clientv3.LeaseID) (*session, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.ttl)
	defer cancel()
	sent := time.Now()
	g, err := n.cli.Grant(ctx, int64(n.ttl/time.Second))
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	ttl := time.Duration(g.TTL) * time.Second
	s := &session{lease: g.ID, ttl: ttl, validUntil: sent.Add(ttl - margin(ttl))}
	s.ctx, s.cancel = context.WithCancel(n.ctx)
	s.timer = time.AfterFunc(time.Until(s.validUntil), func() { n.expire(s) })
	s.wg.Add(1)
	go n.keepAlive(s)
	if err := n.register(s, prev); err != nil {
		n.endSession(s, err)
		n.closeSession(s)
		n.revoke(s.lease)
		return nil, err
	}
	return s, nil
}

// expire ends the session when its validity has passed (the timer may fire
// just before a renewal moved it).
func (n *Node) expire(s *session) {
	s.mu.Lock()
	if left := time.Until(s.validUntil); left > 0 {
		s.timer.Reset(left)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	n.endSession(s, errLeaseUnknown)
}

// endSession drops every claim of the session at once and cancels the
// session, recording why. Later calls change nothing.
func (n *Node) endSession(s *session, cause error) {
	n.change(func() Change {
		s.mu.Lock()
		first := s.cause == nil
		if first {
			s.cause = cause
		}
		s.mu.Unlock()
		s.cancel()
		lost := n.dropClaims()
		if first && n.setConnected(false) && n.ctx.Err() == nil {
			n.log.Warn("cluster: lost the lease; stopped probing, reads are served from the last known state", "err", cause, "shards", len(lost))
		}
		return Change{Lost: lost}
	})
}

// closeSession waits for the session's goroutines after it ended.
func (n *Node) closeSession(s *session) {
	s.timer.Stop()
	s.wg.Wait()
}

// register puts the node's member key under the session's lease. A key of
// the same name under another lease is a live node of that name (or one
// that died less than a TTL ago): wait for it to go, rather than have two
// nodes answer to one name. A key under the node's own previous lease (it
// gave that lease up during an outage) is taken over in place, so the
// others never see the node leave.
func (n *Node) register(s *session, prev clientv3.LeaseID) error {
	key := n.keys.Member(n.cfg.Name)
	val, _ := json.Marshal(struct {
		Node  string    `json:"node"`
		Since time.Time `json:"since"`
	}{n.cfg.Name, time.Now().UTC()})
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.ttl)
		resp, err := n.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(s.lease))).
			Else(clientv3.OpGet(key)).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("register %s: %w", key, err)
		}
		if resp.Succeeded {
			return nil
		}
		kv := resp.Responses[0].GetResponseRange().Kvs[0]
		if prev != 0 && clientv3.LeaseID(kv.Lease) == prev {
			if n.takeOver(s, key, string(val), prev) {
				return nil
			}
			continue
		}
		n.log.Warn("cluster: node name in use by another lease; waiting for it to expire", "key", key, "lease", kv.Lease)
		if err := n.waitGone(s.ctx, key, resp.Header.Revision); err != nil {
			return err
		}
	}
}

// takeOver moves the member key from the node's previous lease to the new
// one, then revokes the previous lease (which drops its stale claims).
func (n *Node) takeOver(s *session, key, val string, prev clientv3.LeaseID) bool {
	ctx, cancel := context.WithTimeout(s.ctx, s.ttl)
	defer cancel()
	resp, err := n.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", prev)).
		Then(clientv3.OpPut(key, val, clientv3.WithLease(s.lease))).Commit()
	if err != nil || !resp.Succeeded {
		return false
	}
	n.revoke(prev)
	return true
}

// waitGone returns when key is deleted after rev.
func (n *Node) waitGone(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range n.cli.Watch(wctx, key, clientv3.WithRev(rev+1), clientv3.WithFilterPut()) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", key, err)
		}
		if len(wr.Events) > 0 {
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("watch %s: closed", key)
}

// keepAlive renews the lease every third of its TTL, each renewal bounded
// by that third. A renewal that etcd refuses (the lease was revoked or has
// expired) ends the session at once.
func (n *Node) keepAlive(s *session) {
	defer s.wg.Done()
	t := time.NewTicker(s.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(s.ctx, s.ttl/3)
		_, err := n.cli.KeepAliveOnce(ctx, s.lease)
		cancel()
		switch {
		case err == nil:
			s.extend(sent)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			n.endSession(s, errLeaseGone)
			return
		case s.ctx.Err() == nil:
			n.log.Debug("cluster: lease renewal failed", "err", err)
		}
	}
}
