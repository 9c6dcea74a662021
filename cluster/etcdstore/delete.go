package etcdstore

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/store"
)

// deleteTries bounds the attempts of a Delete that keeps losing races with
// the probes of its watch.
const deleteTries = 5

// Delete removes a watch with its history, Report bodies and alert state,
// and appends feed (its removal) in the same Txn. It is conditional on the
// watch's state being as read: a probe result committed meanwhile makes it
// read the watch again and retry.
func (s *Store) Delete(id string, feed ...store.FeedEntry) (store.Record, error) {
	for try := 0; ; try++ {
		rec, _, err := s.record(id)
		if err != nil {
			return store.Record{}, err
		}
		err = s.deleteOnce(rec, feed)
		if !errors.Is(err, cluster.ErrConflict) {
			if err != nil {
				return store.Record{}, fmt.Errorf("etcdstore: delete watch %s: %w", id, err)
			}
			return rec, nil
		}
		if try == deleteTries-1 {
			return store.Record{}, fmt.Errorf("etcdstore: delete watch %s: still changing after %d attempts: %w", id, deleteTries, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		for _, key := range []string{s.keys.Watch(id), s.keys.State(id)} {
			if err := s.reread(ctx, key); err != nil {
				s.log.Warn("etcdstore: re-read a watch being deleted", "id", id, "err", err)
			}
		}
		cancel()
	}
}

func (s *Store) deleteOnce(rec store.Record, feed []store.FeedEntry) error {
	id := rec.ID
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.Timeout)
	defer cancel()
	p := &pending{up: &store.Update{Record: rec, Feed: feed}}
	w := &p.w
	w.Ctx, w.Urgent = ctx, true
	stateKey, specKey := s.keys.State(id), s.keys.Watch(id)
	w.Cmps = append(w.Cmps, clientv3.Compare(clientv3.ModRevision(stateKey), "=", rec.Rev),
		clientv3.Compare(clientv3.CreateRevision(specKey), ">", 0))
	p.dels = []string{specKey, stateKey}
	tk := s.keys.Target(rec.Identity())
	if tv, ok := s.mirror.Get(tk); ok && string(tv.Value) == id {
		w.Cmps = append(w.Cmps, clientv3.Compare(clientv3.Value(tk), "=", id))
		p.dels = append(p.dels, tk)
	}
	prefixes := []string{s.keys.Alerts(id), s.keys.Reports(id), s.keys.History(id)}
	w.Ops = opsOf(nil, p.dels)
	for _, pre := range prefixes {
		w.Ops = append(w.Ops, clientv3.OpDelete(pre, clientv3.WithPrefix()))
	}
	w.Keys = []string{stateKey}
	s.feedOps(p, feed)
	done := make(chan cluster.Result, 1)
	w.Done = func(r cluster.Result) { done <- r }
	s.batch.Submit(*w)
	r := <-done
	if r.Err != nil {
		return r.Err
	}
	written := cluster.Written{Rev: r.Rev, Deletes: p.dels, DeletePrefixes: prefixes[:2]}
	s.noteFeed(&written, feed, r.First)
	s.mirror.Note(written)
	s.mu.Lock()
	delete(s.own, id)
	delete(s.states, id)
	s.mu.Unlock()
	return nil
}
