package etcdstore

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/store"
)

// The alert feed: feed/<seq> -> a FeedEntry with the writer's origin.
// Numbers come from the cluster-wide sequence (Keyspace.FeedSeq) in the
// Txn that records the entries' cause; each entry appended removes the one
// store.FeedKeep before it, so the feed keeps the newest FeedKeep, as the
// bbolt store does, and cursors mean the same.

type feedV struct {
	Origin string `json:"o"`
	store.FeedEntry
}

// feedOps makes p take numbers for entries and append them.
func (s *Store) feedOps(p *pending, entries []store.FeedEntry) {
	if len(entries) == 0 {
		return
	}
	raws := make([]string, len(entries))
	for i, e := range entries {
		raw, _ := json.Marshal(feedV{Origin: s.origin, FeedEntry: e}) // plain fields: cannot fail
		raws[i] = string(raw)
	}
	p.w.Seq = len(entries)
	p.w.SeqOps = func(first uint64) []clientv3.Op {
		ops := make([]clientv3.Op, 0, 2*len(raws))
		for i, raw := range raws {
			seq := first + uint64(i)
			ops = append(ops, clientv3.OpPut(s.keys.FeedEntry(seq), raw))
			if seq > store.FeedKeep {
				ops = append(ops, clientv3.OpDelete(s.keys.FeedEntry(seq-store.FeedKeep)))
			}
		}
		return ops
	}
}

// noteFeed adds to w what the feed part of a committed write did.
func (s *Store) noteFeed(w *cluster.Written, entries []store.FeedEntry, first uint64) {
	if len(entries) == 0 || first == 0 {
		return
	}
	if w.Puts == nil {
		w.Puts = make(map[string][]byte)
	}
	for i, e := range entries {
		seq := first + uint64(i)
		raw, _ := json.Marshal(feedV{Origin: s.origin, FeedEntry: e})
		w.Puts[s.keys.FeedEntry(seq)] = raw
		if seq > store.FeedKeep {
			w.Deletes = append(w.Deletes, s.keys.FeedEntry(seq-store.FeedKeep))
		}
	}
}

// Feed returns up to limit entries with a number above after, oldest first.
func (s *Store) Feed(after uint64, limit int) (store.FeedPage, error) {
	type kv struct {
		seq uint64
		raw []byte
	}
	var all []kv
	p := s.keys.Feed()
	s.mirror.Range(p, func(k string, v cluster.KV) bool {
		if seq, err := strconv.ParseUint(strings.TrimPrefix(k, p), 10, 64); err == nil {
			all = append(all, kv{seq, v.Value})
		}
		return true
	})
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	var page store.FeedPage
	if len(all) > 0 {
		page.Oldest, page.Last = all[0].seq, all[len(all)-1].seq
	}
	i := sort.Search(len(all), func(i int) bool { return all[i].seq > after })
	for ; i < len(all) && len(page.Entries) < limit; i++ {
		var e feedV
		if err := json.Unmarshal(all[i].raw, &e); err != nil {
			return store.FeedPage{}, fmt.Errorf("etcdstore: feed entry %d: %w", all[i].seq, err)
		}
		e.Seq = all[i].seq
		page.Entries = append(page.Entries, e.FeedEntry)
	}
	return page, nil
}
