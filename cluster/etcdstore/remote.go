package etcdstore

import (
	"context"
	"encoding/json"
	"sort"
	"strings"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/watch"
)

// SubscribeRemote registers fn for the Changes other processes commit: one
// per watch per Txn, with the events of that Txn's feed entries for the
// watch (none for a routine probe result, which only keeps the engine's
// copy of the watch current). fn is called from the mirror's goroutine, in
// revision order.
func (s *Store) SubscribeRemote(fn func(watch.Change)) (cancel func()) {
	s.mu.Lock()
	id := s.nextID
	s.nextID++
	s.subs[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}

func (s *Store) publish(c watch.Change) {
	s.mu.Lock()
	fns := make([]func(watch.Change), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}

// onEvents turns the mirror's events (other processes' writes: its own
// are noted, or carry its origin) into Changes, one Txn at a time.
func (s *Store) onEvents(evs []cluster.MirrorEvent) {
	for len(evs) > 0 {
		n := 1
		for n < len(evs) && evs[n].Rev == evs[0].Rev {
			n++
		}
		s.onTxn(evs[:n])
		evs = evs[n:]
	}
}

// onTxn handles the events of one revision.
func (s *Store) onTxn(evs []cluster.MirrorEvent) {
	touched := map[string]bool{}
	events := map[string][]watch.Event{}
	outbox := false
	for _, ev := range evs {
		rest := strings.TrimPrefix(ev.Key, s.keys.Prefix())
		dir, name, _ := strings.Cut(rest, "/")
		switch dir {
		case "watches":
			touched[name] = true
		case "state":
			if ev.Deleted {
				s.mu.Lock()
				delete(s.states, name)
				delete(s.own, name)
				s.mu.Unlock()
				touched[name] = true
			} else if st, err := decodeState(ev.Value); err != nil || st.Origin != s.origin {
				touched[name] = true
			}
		case "feed":
			var e feedV
			if ev.Deleted || ev.Reload || json.Unmarshal(ev.Value, &e) != nil || e.Origin == s.origin {
				continue
			}
			events[e.WatchID] = append(events[e.WatchID], watch.Event{Kind: e.Kind, Level: e.Level, Message: e.Message})
			touched[e.WatchID] = true
		case "outbox":
			outbox = outbox || !ev.Deleted
		}
	}
	if outbox {
		s.wakeOutbox()
	}
	ids := make([]string, 0, len(touched))
	for id := range touched {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s.publish(watch.Change{Watch: watch.Watch{ID: id}, Events: events[id]})
	}
}

// Ownership.

// Claims takes a change of the node's shard claims (cluster.Config's
// OnChange): lost shards stop counting at once; acquired ones count once
// the mirror holds everything up to the claim, so the watches of a shard
// taken over are read as its previous holder last wrote them. The engine
// then hears which watches it gained, and the outbox is woken.
func (s *Store) Claims(c cluster.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sh := range c.Lost {
		delete(s.active, sh)
	}
	// Add under the lock Close takes before it waits: a claim that
	// arrives while the store closes is dropped, never raced with Wait.
	if len(c.Acquired) == 0 || s.closing {
		return
	}
	s.claimsWG.Add(1)
	go func() {
		defer s.claimsWG.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.activate(ctx, c.Acquired)
	}()
}

func (s *Store) activate(ctx context.Context, claims []cluster.Claim) {
	var top int64
	for _, c := range claims {
		top = max(top, c.Rev)
	}
	if err := s.mirror.WaitRev(ctx, top); err != nil {
		return // closing, or the claims are gone with the connection
	}
	gained := map[int]bool{}
	s.mu.Lock()
	for _, c := range claims {
		if cur, ok := s.node.Claim(c.Shard); ok && cur.Rev == c.Rev && c.Ctx.Err() == nil {
			s.active[c.Shard] = c.Rev
			gained[c.Shard] = true
		}
	}
	fns := append([]func(func(string) bool){}, s.gained...)
	s.mu.Unlock()
	if len(gained) == 0 {
		return
	}
	pred := func(id string) bool { return gained[cluster.ShardOf(id, s.shards)] }
	for _, fn := range fns {
		fn(pred)
	}
	s.wakeOutbox()
}

// OnGained registers fn, told (with a predicate on watch ids) which
// watches this node has just come to own.
func (s *Store) OnGained(fn func(gained func(id string) bool)) {
	s.mu.Lock()
	s.gained = append(s.gained, fn)
	s.mu.Unlock()
}

// Owns reports whether this node probes watch id: it holds the shard, and
// the mirror had caught up with the claim.
func (s *Store) Owns(id string) bool {
	_, ok := s.claimFor(id)
	return ok
}

func (s *Store) claimFor(id string) (cluster.Claim, bool) {
	return s.claimOf(cluster.ShardOf(id, s.shards))
}

func (s *Store) claimOf(shard int) (cluster.Claim, bool) {
	if s.node == nil {
		return cluster.Claim{}, false
	}
	c, ok := s.node.Claim(shard)
	if !ok || c.Ctx.Err() != nil {
		return cluster.Claim{}, false
	}
	s.mu.Lock()
	rev, active := s.active[shard]
	s.mu.Unlock()
	return c, active && rev == c.Rev
}

func (s *Store) holds(shard int) bool {
	_, ok := s.claimOf(shard)
	return ok
}
