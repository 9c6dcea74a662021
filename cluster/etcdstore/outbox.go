package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// The outbox: outbox/<shard>/e/<id> holds a delivery, outbox/<shard>/m/<hash>
// a "channel was told" mark, both written in the Txn of the change that
// caused them (through the commit hook), so that an alert is queued
// exactly when its cause is recorded. The node holding a shard delivers
// its entries, and every update of an entry is fenced on that claim.

type entryV struct {
	Channel   string    `json:"ch"`
	Payload   []byte    `json:"p"`
	CreatedAt time.Time `json:"c"`
	NextAt    time.Time `json:"n"`
	Attempts  int       `json:"a,omitempty"`
	LastError string    `json:"e,omitempty"`
}

// outboxTx is store.OutboxTx inside one update's write.
type outboxTx struct {
	s     *Store
	p     *pending
	shard int
}

func (t *outboxTx) Marked(keys ...string) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	for _, k := range keys {
		if _, ok := t.s.mirror.Get(t.s.keys.OutboxMark(t.shard, k)); ok {
			out[k] = true
		}
	}
	return out, nil
}

func (t *outboxTx) Enqueue(marks map[string]bool, entries ...store.OutboxEntry) error {
	for i, e := range entries {
		if e.Channel == "" {
			return fmt.Errorf("etcdstore: outbox entry %d has no channel", i)
		}
		if e.NextAt.IsZero() {
			e.NextAt = e.CreatedAt
		}
		raw, err := json.Marshal(entryV{Channel: e.Channel, Payload: e.Payload, CreatedAt: e.CreatedAt, NextAt: e.NextAt})
		if err != nil {
			return fmt.Errorf("etcdstore: encode outbox entry: %w", err)
		}
		t.p.puts[t.s.keys.OutboxEntry(t.shard, t.s.newEntryID())] = raw
	}
	// One event may clear a mark that the next one in the same write sets
	// again (a rotation, then the new certificate's stage): the last word
	// stands, and a Txn names each key once.
	for k, set := range marks {
		key := t.s.keys.OutboxMark(t.shard, k)
		if set {
			t.p.puts[key] = []byte(k)
			t.p.dels = slices.DeleteFunc(t.p.dels, func(d string) bool { return d == key })
		} else {
			delete(t.p.puts, key)
			if !slices.Contains(t.p.dels, key) {
				t.p.dels = append(t.p.dels, key)
			}
		}
	}
	return nil
}

func (t *outboxTx) OnCommit(fn func()) { t.p.onCommit = append(t.p.onCommit, fn) }

func (s *Store) newEntryID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entryID++
	return s.entryID
}

// Outbox is the delivery side of the queue: the entries of the shards this
// node holds. It implements watch.Outbox and watch.OutboxReady.
type Outbox struct{ s *Store }

var (
	_ watch.Outbox      = (*Outbox)(nil)
	_ watch.OutboxReady = (*Outbox)(nil)
)

// Outbox returns the node's delivery view of the outbox.
func (s *Store) Outbox() *Outbox { return &Outbox{s} }

// Ready is signalled when entries may have become deliverable outside this
// process's commits: another process queued some in a shard this node
// holds, or the node took shards over.
func (o *Outbox) Ready() <-chan struct{} { return o.s.ready }

func (s *Store) wakeOutbox() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

type held struct {
	store.OutboxEntry
	key   string
	shard int
	order int64
}

// entries lists the entries of the shards held, in the order they were
// queued.
func (o *Outbox) entries() []held {
	s := o.s
	var out []held
	p := s.keys.Prefix() + "outbox/"
	s.mirror.Range(p, func(k string, kv cluster.KV) bool {
		sh, id, ok := s.parseEntryKey(k)
		if !ok || !s.holds(sh) {
			return true
		}
		h := held{key: k, shard: sh, order: kv.CreateRev, OutboxEntry: store.OutboxEntry{ID: id}}
		var v entryV
		if json.Unmarshal(kv.Value, &v) == nil {
			h.Channel, h.Payload, h.CreatedAt, h.NextAt, h.Attempts, h.LastError = v.Channel, v.Payload, v.CreatedAt, v.NextAt, v.Attempts, v.LastError
		}
		out = append(out, h)
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].order != out[j].order {
			return out[i].order < out[j].order
		}
		return out[i].key < out[j].key
	})
	return out
}

// parseEntryKey reads outbox/<shard>/e/<id>.
func (s *Store) parseEntryKey(k string) (shard int, id uint64, ok bool) {
	rest := strings.TrimPrefix(k, s.keys.Prefix()+"outbox/")
	shardS, name, ok := strings.Cut(rest, "/e/")
	if !ok {
		return 0, 0, false
	}
	sh, err1 := strconv.Atoi(shardS)
	n, err2 := strconv.ParseUint(name, 16, 64)
	return sh, n, err1 == nil && err2 == nil
}

// Due returns up to limit entries that may be attempted at now, queue
// order, each channel a FIFO (see store.Outbox.Due). An unreadable entry
// comes with its ID alone, to be dropped.
func (o *Outbox) Due(now time.Time, limit int) ([]store.OutboxEntry, error) {
	var out []store.OutboxEntry
	blocked := map[string]bool{}
	for _, h := range o.entries() {
		if h.Channel != "" && blocked[h.Channel] {
			continue
		}
		if h.Channel != "" && h.NextAt.After(now) {
			blocked[h.Channel] = true
			continue
		}
		out = append(out, h.OutboxEntry)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

// NextDue is the earliest NextAt among the channels' oldest entries.
func (o *Outbox) NextDue() (time.Time, bool, error) {
	var next time.Time
	found := false
	seen := map[string]bool{}
	for _, h := range o.entries() {
		if seen[h.Channel] {
			continue
		}
		seen[h.Channel] = true
		if !found || h.NextAt.Before(next) {
			next, found = h.NextAt, true
		}
	}
	return next, found, nil
}

// MarkDelivered removes a delivered entry. An entry of a shard this node
// no longer holds is not its to record: the shard's new holder delivers it
// again, with the same delivery id.
func (o *Outbox) MarkDelivered(id uint64) error { return o.remove(id, "delivered") }

// Drop removes an entry that will never be delivered.
func (o *Outbox) Drop(id uint64) error { return o.remove(id, "dropped") }

func (o *Outbox) remove(id uint64, what string) error {
	h, ok := o.find(id)
	if !ok {
		return nil
	}
	return o.write(h, what, nil)
}

// Reschedule records a failed attempt.
func (o *Outbox) Reschedule(id uint64, next time.Time, attempts int, lastErr string) error {
	h, ok := o.find(id)
	if !ok {
		return nil
	}
	if len(lastErr) > 1024 {
		lastErr = lastErr[:1024]
	}
	raw, err := json.Marshal(entryV{Channel: h.Channel, Payload: h.Payload, CreatedAt: h.CreatedAt, NextAt: next, Attempts: attempts, LastError: lastErr})
	if err != nil {
		return fmt.Errorf("etcdstore: encode outbox entry: %w", err)
	}
	return o.write(h, "rescheduled", raw)
}

func (o *Outbox) find(id uint64) (held, bool) {
	for _, h := range o.entries() {
		if h.ID == id {
			return h, true
		}
	}
	return held{}, false
}

// write puts (raw) or deletes (nil) an entry, fenced on its shard's claim.
func (o *Outbox) write(h held, what string, raw []byte) error {
	s := o.s
	c, ok := s.claimOf(h.shard)
	if !ok {
		return nil
	}
	op := clientv3.OpDelete(h.key)
	if raw != nil {
		op = clientv3.OpPut(h.key, string(raw))
	}
	ctx, cancel := context.WithTimeout(c.Ctx, s.cfg.Timeout)
	defer cancel()
	resp, err := s.node.Commit(ctx, []cluster.Claim{c}, op)
	if errors.Is(err, cluster.ErrNotOwner) || c.Ctx.Err() != nil {
		s.log.Info("etcdstore: outbox entry left to the shard's new holder", "entry", h.ID, "shard", h.shard, "outcome", what)
		return nil
	}
	if err != nil {
		return fmt.Errorf("etcdstore: outbox entry %d %s: %w", h.ID, what, err)
	}
	w := cluster.Written{Rev: resp.Header.Revision}
	if raw != nil {
		w.Puts = map[string][]byte{h.key: raw}
	} else {
		w.Deletes = []string{h.key}
	}
	s.mirror.Note(w)
	return nil
}
