package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/store"
)

// MigrateStats says what Migrate moved.
type MigrateStats struct {
	Watches int      `json:"watches"` // moved, with their history and alert state
	Skipped []string `json:"skipped"` // ids already in etcd (or their target, under another id)
	// Quarantined are the ids whose record does not decode: set aside in
	// the source (tlswatch db check lists them), not moved.
	Quarantined []string `json:"quarantined,omitempty"`
	Reports     int      `json:"reports"` // probe results moved into history
	Alerts      int      `json:"alerts"`  // alert states (per certificate)
	Outbox      int      `json:"outbox"`  // deliveries still queued
	Marks       int      `json:"marks"`   // "channel was told" marks
	Feed        int      `json:"feed"`    // alert feed entries
}

// Migrate copies an embedded database's watches into the keyspace: each
// watch with its state, its history (the newest KeepSamples probes)
// and its alert state per certificate in one Txn, which does nothing when
// the watch (or its target) is already there, so running it twice moves
// nothing twice. Then the alert outbox (deliveries and marks, to their
// watches' shards) and the alert feed, in order. The source is only read.
func Migrate(ctx context.Context, src *store.DB, cli *clientv3.Client, keys cluster.Keyspace) (MigrateStats, error) {
	var stats MigrateStats
	shards, err := cluster.LoadMeta(ctx, cli, keys, 0)
	if err != nil {
		return stats, err
	}
	m := &migrator{s: &Store{keys: keys, shards: shards, origin: "migrate"}, cli: cli}
	moved := map[string]bool{}
	bad, err := src.ForEach(func(r store.Record) error {
		ok, err := m.watch(ctx, src, r, &stats)
		if ok {
			moved[r.ID] = true
		}
		return err
	})
	for _, q := range bad {
		stats.Quarantined = append(stats.Quarantined, q.ID)
	}
	if err != nil && !errors.Is(err, store.ErrNotSetAside) {
		return stats, err
	}
	if err := m.outbox(ctx, src, moved, &stats); err != nil {
		return stats, err
	}
	return stats, m.feed(ctx, src, moved, &stats)
}

type migrator struct {
	s   *Store
	cli *clientv3.Client
}

// watch moves one watch; false when it was there already.
func (m *migrator) watch(ctx context.Context, src *store.DB, r store.Record, stats *MigrateStats) (bool, error) {
	s := m.s
	reps, err := src.Replay(r.ID, KeepSamples)
	if err != nil {
		return false, fmt.Errorf("migrate: history of %s: %w", r.ID, err)
	}
	puts := map[string][]byte{}
	st := &stateV{}
	for i := len(reps) - 1; i >= 0; i-- {
		h := histOps{puts: puts}
		if err := s.addResult(r.ID, st, &reps[i], &h); err != nil {
			return false, fmt.Errorf("migrate: history of %s: %w", r.ID, err)
		}
		for _, k := range h.dels {
			delete(puts, k)
		}
	}
	stateOf(&r, st)
	st.Origin = s.origin
	alerts, err := src.Alerts(r.ID)
	if err != nil {
		return false, err
	}
	for _, a := range alerts {
		raw, _ := json.Marshal(a)
		puts[s.keys.Alert(r.ID, a.Fingerprint)] = raw
	}
	spec, err := encodeSpec(r)
	if err != nil {
		return false, err
	}
	state, _ := json.Marshal(st)
	puts[s.keys.Watch(r.ID)], puts[s.keys.State(r.ID)] = spec, state
	tk := s.keys.Target(r.Identity())
	puts[tk] = []byte(r.ID)
	resp, err := m.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(s.keys.Watch(r.ID)), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(tk), "=", 0),
	).Then(opsOf(puts, nil)...).Commit()
	if err != nil {
		return false, fmt.Errorf("migrate: watch %s: %w", r.ID, err)
	}
	if !resp.Succeeded {
		stats.Skipped = append(stats.Skipped, r.ID)
		return false, nil
	}
	stats.Watches++
	stats.Reports += len(reps)
	stats.Alerts += len(alerts)
	return true, nil
}

// outbox moves the queued deliveries and the marks of the watches moved.
func (m *migrator) outbox(ctx context.Context, src *store.DB, moved map[string]bool, stats *MigrateStats) error {
	s := m.s
	var ops []clientv3.Op
	marks, err := src.Outbox().Marks()
	if err != nil {
		return err
	}
	for _, k := range marks {
		// "alert", channel, watch id, condition (see package alert).
		parts := strings.Split(k, "\x00")
		if len(parts) < 3 || !moved[parts[2]] {
			continue
		}
		ops = append(ops, clientv3.OpPut(s.keys.OutboxMark(cluster.ShardOf(parts[2], s.shards), k), k))
		stats.Marks++
	}
	entries, err := src.Outbox().Pending(0)
	if err != nil {
		return err
	}
	for _, e := range entries {
		var who struct {
			WatchID string `json:"watch_id"`
		}
		if json.Unmarshal(e.Payload, &who) != nil || !moved[who.WatchID] {
			continue
		}
		raw, _ := json.Marshal(entryV{Channel: e.Channel, Payload: e.Payload, CreatedAt: e.CreatedAt, NextAt: e.NextAt, Attempts: e.Attempts, LastError: e.LastError})
		id := uint64(0x6d<<56) | e.ID // "m": ids of their own, in the source's order
		ops = append(ops, clientv3.OpPut(s.keys.OutboxEntry(cluster.ShardOf(who.WatchID, s.shards), id), string(raw)))
		stats.Outbox++
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := m.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("migrate: outbox: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// feed appends the source's alert feed entries of the watches moved, in
// order, numbered after what the keyspace's feed holds.
func (m *migrator) feed(ctx context.Context, src *store.DB, moved map[string]bool, stats *MigrateStats) error {
	page, err := src.Feed(0, store.FeedKeep)
	if err != nil {
		return err
	}
	entries := slices.DeleteFunc(page.Entries, func(e store.FeedEntry) bool { return !moved[e.WatchID] })
	for len(entries) > 0 {
		n := min(len(entries), 60)
		if err := m.feedChunk(ctx, entries[:n]); err != nil {
			return err
		}
		stats.Feed += n
		entries = entries[n:]
	}
	return nil
}

func (m *migrator) feedChunk(ctx context.Context, entries []store.FeedEntry) error {
	s := m.s
	seqKey := s.keys.FeedSeq()
	for {
		resp, err := m.cli.Get(ctx, seqKey)
		if err != nil {
			return fmt.Errorf("migrate: feed: %w", err)
		}
		var cur uint64
		cond := clientv3.Compare(clientv3.CreateRevision(seqKey), "=", 0)
		if len(resp.Kvs) == 1 {
			cur, _ = strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
			cond = clientv3.Compare(clientv3.ModRevision(seqKey), "=", resp.Kvs[0].ModRevision)
		}
		p := &pending{}
		s.feedOps(p, entries)
		ops := append(p.w.SeqOps(cur+1), clientv3.OpPut(seqKey, strconv.FormatUint(cur+uint64(len(entries)), 10)))
		t, err := m.cli.Txn(ctx).If(cond).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("migrate: feed: %w", err)
		}
		if t.Succeeded {
			return nil
		}
	}
}
