package etcdstore

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// The keyspace keeps a watch's newest KeepSamples probes and no
// aggregates: get_history and the recent figures are computed from those
// samples (store.PageFromSamples, store.RecentFromSamples), with the same
// sketch as the embedded store's aggregates. A range older than the
// samples kept is answered with what is kept.

// DefaultRecentEvery is how often a node recomputes every watch's recent
// figures: each pass reads the watches' segments from etcd (see RecentOf),
// so less often than the embedded store's watch.DefaultRecentEvery.
const DefaultRecentEvery = 30 * time.Minute

// recentTxnGets bounds the range reads of one Txn (etcd's --max-txn-ops is
// 128 by default).
const recentTxnGets = 100

func (sm *sample) public() store.Sample {
	t := sm.timingMS()
	return store.Sample{At: sm.time(), Status: sm.status, DNSMS: t.DNS, ConnectMS: t.Connect,
		HandshakeMS: t.Handshake, Report: sm.refString()}
}

// Query answers a history query for one watch from its kept samples.
func (s *Store) Query(id string, q store.HistoryQuery) (store.HistoryPage, error) {
	r, st, err := s.record(id)
	if err != nil {
		return store.HistoryPage{}, err
	}
	if st == nil {
		return store.HistoryPage{}, nil
	}
	kept, err := s.keptSamples(id, st)
	if err != nil {
		return store.HistoryPage{}, fmt.Errorf("etcdstore: history of %s: %w", id, err)
	}
	pub := publicSamples(kept)
	return store.PageFromSamples(pub, q, func(i int) (probe.Report, bool) {
		sm := &kept[i]
		return s.report(&r, sm.refString(), sm.time(), sm.timingMS(), sm.status), true
	}), nil
}

// keptSamples are the watch's samples, oldest first: the sealed segments
// read from etcd (when it cannot be reached, only the newest samples, in
// the state) and the open block.
func (s *Store) keptSamples(id string, st *stateV) ([]sample, error) {
	open, err := decodeBlock(st.Block)
	if err != nil {
		return nil, err
	}
	if st.Segs == 0 {
		return open, nil
	}
	older, err := s.segments(id, keepSegments)
	if err != nil {
		s.log.Warn("etcdstore: history beyond the newest samples unavailable", "id", id, "err", err)
	}
	return append(older, open...), nil
}

func publicSamples(ss []sample) []store.Sample {
	out := make([]store.Sample, len(ss))
	for i := range ss {
		out[i] = ss[i].public()
	}
	return out
}

// RecentOf computes each watch's uptime and latency over the last day and
// month from its kept samples, reading the sealed segments of up to
// recentTxnGets watches per etcd Txn.
func (s *Store) RecentOf(ids []string, now time.Time) (map[string]store.Recent, error) {
	out := make(map[string]store.Recent, len(ids))
	for len(ids) > 0 {
		batch := ids[:min(len(ids), recentTxnGets)]
		ids = ids[len(batch):]
		if err := s.recentBatch(batch, now, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) recentBatch(ids []string, now time.Time, out map[string]store.Recent) error {
	states := make([]*stateV, len(ids))
	var gets []clientv3.Op
	for i, id := range ids {
		if _, st, err := s.record(id); err == nil && st != nil {
			states[i] = st
			if st.Segs > 0 {
				gets = append(gets, clientv3.OpGet(s.keys.History(id), clientv3.WithPrefix()))
			}
		}
	}
	var segs []*etcdserverpb.ResponseOp
	if len(gets) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("etcdstore: recent history: %w", err)
		}
		segs = resp.Responses
	}
	g := 0
	for i, st := range states {
		if st == nil {
			continue
		}
		kept, err := decodeBlock(st.Block)
		if err != nil {
			continue
		}
		if st.Segs > 0 {
			older, err := sealed(segs[g].GetResponseRange().GetKvs())
			g++
			if err != nil {
				s.log.Warn("etcdstore: recent history of a watch from its newest samples", "id", ids[i], "err", err)
			}
			kept = append(older, kept...)
		}
		out[ids[i]] = store.RecentFromSamples(publicSamples(kept), now)
	}
	return nil
}

// sealed decodes segments in key order (oldest first).
func sealed(kvs []*mvccpb.KeyValue) ([]sample, error) {
	var out []sample
	for _, kv := range kvs {
		ss, err := decodeBlock(kv.Value)
		if err != nil {
			return out, fmt.Errorf("segment %s: %w", kv.Key, err)
		}
		out = append(out, ss...)
	}
	return out, nil
}
