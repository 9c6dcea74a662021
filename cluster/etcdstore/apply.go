package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// maxAlertsPerWatch bounds the certificates whose alert state a watch
// keeps, as the bbolt store does.
const maxAlertsPerWatch = 8

// pending is one update on its way to etcd: what it writes, so that the
// mirror can note it once committed.
type pending struct {
	up       *store.Update
	w        cluster.Write
	puts     map[string][]byte
	dels     []string
	onCommit []func()
	conflict bool // known lost before it was sent
	cancel   context.CancelFunc
}

// Apply writes each update in a Txn of the batcher (many per Txn), fenced
// and conditional as the package documentation says. An update is not
// applied, without an error, when its watch is gone, when this node no
// longer holds its shard, or when another writer changed the watch since
// the record it carries was read (the engine then reads it again: this
// Store hands the engine the current record at once). Updates of one watch
// commit in order, one Txn after another.
func (s *Store) Apply(ups []store.Update) ([]bool, error) {
	applied := make([]bool, len(ups))
	var firstErr error
	todo := make([]int, len(ups))
	for i := range todo {
		todo[i] = i
	}
	for len(todo) > 0 {
		var round, rest []int
		seen := make(map[string]bool)
		for _, i := range todo {
			if id := ups[i].Record.ID; seen[id] {
				rest = append(rest, i)
			} else {
				seen[id] = true
				round = append(round, i)
			}
		}
		if err := s.applyRound(ups, round, applied); err != nil && firstErr == nil {
			firstErr = err
		}
		todo = rest
	}
	return applied, firstErr
}

func (s *Store) applyRound(ups []store.Update, round []int, applied []bool) error {
	var firstErr error
	var wg sync.WaitGroup
	ps := make([]*pending, len(round))
	results := make([]cluster.Result, len(round))
	for j, i := range round {
		p, err := s.prepare(&ups[i])
		if err != nil {
			firstErr = cmp(firstErr, fmt.Errorf("etcdstore: update watch %s: %w", ups[i].Record.ID, err))
			continue
		}
		if p == nil || p.conflict {
			ps[j] = p
			continue
		}
		ps[j] = p
		wg.Add(1)
		p.w.Done = func(r cluster.Result) { results[j] = r; wg.Done() }
		s.batch.Submit(p.w)
	}
	s.batch.Flush()
	wg.Wait()
	for j, i := range round {
		p := ps[j]
		if p == nil {
			continue
		}
		if p.cancel != nil {
			p.cancel()
		}
		r := results[j]
		switch {
		case p.conflict || errors.Is(r.Err, cluster.ErrConflict):
			s.refresh(p.up.Record.ID, p.up.Record.Identity())
		case r.Err == nil:
			s.committed(p, r)
			applied[i] = true
		case errors.Is(r.Err, cluster.ErrNotOwner):
		default:
			firstErr = cmp(firstErr, fmt.Errorf("etcdstore: update watch %s: %w", p.up.Record.ID, r.Err))
		}
	}
	return firstErr
}

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// prepare builds the write of one update; nil when it is dropped (its
// watch is gone, or its shard is not held).
func (s *Store) prepare(u *store.Update) (*pending, error) {
	rec := u.Record
	id := rec.ID
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return nil, fmt.Errorf("invalid id %q", id)
	}
	spec, hasSpec := s.mirror.Get(s.keys.Watch(id))
	cur, _, err := s.state(id)
	if err != nil {
		return nil, err
	}
	if !u.Create && (!hasSpec || cur == nil) {
		return nil, nil
	}
	p := &pending{up: u, puts: make(map[string][]byte)}
	if u.Create {
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.Timeout)
		p.w.Ctx, p.cancel = ctx, cancel
		if !s.createOps(p, spec, hasSpec) {
			p.conflict = true
			return p, nil
		}
	} else {
		c, ok := s.claimFor(id)
		if !ok {
			return nil, nil
		}
		p.w.Claim = c
	}
	stateKey := s.keys.State(id)
	if cur != nil {
		p.w.Cmps = append(p.w.Cmps, clientv3.Compare(clientv3.ModRevision(stateKey), "=", s.expected(id, rec.Rev)))
	} else {
		p.w.Cmps = append(p.w.Cmps, clientv3.Compare(clientv3.CreateRevision(stateKey), "=", 0))
	}
	if err := s.stateOps(p, cur); err != nil {
		return nil, err
	}
	if err := s.alertOps(p); err != nil {
		return nil, err
	}
	if u.InTx != nil {
		tx := &outboxTx{s: s, p: p, shard: cluster.ShardOf(id, s.shards)}
		if err := u.InTx(tx); err != nil {
			return nil, fmt.Errorf("commit hook: %w", err)
		}
	}
	s.feedOps(p, u.Feed)
	p.w.Urgent = u.Create || len(u.Feed) > 0
	p.w.Keys = []string{stateKey}
	p.w.Ops = opsOf(p.puts, p.dels)
	return p, nil
}

// createOps adds what Add writes beyond the state: the spec when it
// changed, and the target's identity for a new watch. False when another
// watch holds the identity.
func (s *Store) createOps(p *pending, spec cluster.KV, hasSpec bool) bool {
	rec := &p.up.Record
	raw, err := encodeSpec(*rec)
	if err != nil {
		return false
	}
	if !hasSpec || !bytes.Equal(raw, spec.Value) {
		p.puts[s.keys.Watch(rec.ID)] = raw
	}
	tk := s.keys.Target(rec.Identity())
	tv, ok := s.mirror.Get(tk)
	switch {
	case !ok:
		p.puts[tk] = []byte(rec.ID)
		p.w.Cmps = append(p.w.Cmps, clientv3.Compare(clientv3.CreateRevision(tk), "=", 0))
	case string(tv.Value) != rec.ID:
		return false
	}
	return true
}

// expected is the revision an update based on the record at base must
// find: this process's own later write when it made one from that base
// (base 0: a watch this process created).
func (s *Store) expected(id string, base int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.own[id]; ok && c.base == base {
		return c.cur
	}
	return base
}

func (s *Store) stateOps(p *pending, cur *stateV) error {
	u := p.up
	st := &stateV{}
	if cur != nil {
		c := *cur
		st = &c
	}
	stateOf(&u.Record, st)
	st.Origin = s.origin
	if u.Report != nil {
		h := histOps{puts: p.puts}
		if err := s.addResult(u.Record.ID, st, u.Report, &h); err != nil {
			return err
		}
		p.dels = append(p.dels, h.dels...)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	p.puts[s.keys.State(u.Record.ID)] = raw
	return nil
}

// alertOps stores the alert state of a certificate, forgetting the least
// recently first-seen ones beyond maxAlertsPerWatch.
func (s *Store) alertOps(p *pending) error {
	a := p.up.Alert
	if a == nil {
		return nil
	}
	id := p.up.Record.ID
	raw, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	p.puts[s.keys.Alert(id, a.Fingerprint)] = raw
	var all []store.Alert
	s.mirror.Range(s.keys.Alerts(id), func(_ string, kv cluster.KV) bool {
		var x store.Alert
		if json.Unmarshal(kv.Value, &x) == nil && x.Fingerprint != a.Fingerprint {
			all = append(all, x)
		}
		return true
	})
	if len(all)+1 <= maxAlertsPerWatch {
		return nil
	}
	sort.Slice(all, func(i, j int) bool { return all[i].FirstSeen.Before(all[j].FirstSeen) })
	for _, x := range all[:len(all)+1-maxAlertsPerWatch] {
		p.dels = append(p.dels, s.keys.Alert(id, x.Fingerprint))
	}
	return nil
}

// opsOf is a write's operations: a Txn may name a key once, so a key both
// put and deleted is put (what a write deletes is never what it writes).
func opsOf(puts map[string][]byte, dels []string) []clientv3.Op {
	ops := make([]clientv3.Op, 0, len(puts)+len(dels))
	for k, v := range puts {
		ops = append(ops, clientv3.OpPut(k, string(v)))
	}
	seen := make(map[string]bool, len(dels))
	for _, k := range dels {
		if _, put := puts[k]; !put && !seen[k] {
			seen[k] = true
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	return ops
}

// committed notes a committed update in the mirror and runs what waited
// for its commit.
func (s *Store) committed(p *pending, r cluster.Result) {
	w := cluster.Written{Rev: r.Rev, Puts: p.puts, Deletes: p.dels}
	s.noteFeed(&w, p.up.Feed, r.First)
	s.mirror.Note(w)
	s.mu.Lock()
	s.own[p.up.Record.ID] = chain{base: p.up.Record.Rev, cur: r.Rev}
	s.mu.Unlock()
	for _, fn := range p.onCommit {
		fn()
	}
}

// refresh reads a watch (and the one holding its target's identity) from
// etcd after a lost race, notes them, and hands the engine the current
// records, so that a retry is based on what won.
func (s *Store) refresh(id, identity string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	ids := []string{id}
	tk := s.keys.Target(identity)
	resp, err := s.cli.Get(ctx, tk)
	if err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) != id {
		ids = append(ids, string(resp.Kvs[0].Value))
		s.mirror.Note(cluster.Written{Rev: resp.Kvs[0].ModRevision, Puts: map[string][]byte{tk: resp.Kvs[0].Value}})
	}
	for _, wid := range ids {
		for _, key := range []string{s.keys.Watch(wid), s.keys.State(wid)} {
			if err := s.reread(ctx, key); err != nil {
				s.log.Warn("etcdstore: re-read a watch after a lost race", "id", wid, "err", err)
			}
		}
		s.publish(watch.Change{Watch: watch.Watch{ID: wid}})
	}
}

// reread notes the current value of one key.
func (s *Store) reread(ctx context.Context, key string) error {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		s.mirror.Note(cluster.Written{Rev: resp.Header.Revision, Deletes: []string{key}})
		return nil
	}
	kv := resp.Kvs[0]
	s.mirror.Note(cluster.Written{Rev: kv.ModRevision, Puts: map[string][]byte{key: kv.Value}})
	return nil
}
