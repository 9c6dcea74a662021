package etcdstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// History per watch: the newest samples in the state key (a block of up to
// SegmentSamples), older ones in sealed segments history/<id>/<n> written
// once every SegmentSamples probes, and the Report bodies the samples
// refer to, stored once per distinct content under reports/<id>/<ref>.
//
// The newest segments covering KeepSamples samples are kept, and the
// KeepBodies most recently used bodies: a sample whose body was dropped
// comes back as a Report of its time, status and timing alone. Segments
// are read from etcd on demand (they are most of the bytes and rarely
// read), so the mirror holds only what list_watches needs.

// KeepBodies bounds the Report bodies kept per watch.
const KeepBodies = 8

// KeepSamples is how many of a watch's newest probes the keyspace keeps.
const KeepSamples = 500

// keepSegments is how many sealed segments make up KeepSamples.
const keepSegments = (KeepSamples + SegmentSamples - 1) / SegmentSamples

// histOps are the writes of one probe result beyond the state key.
type histOps struct {
	puts map[string][]byte
	dels []string
}

// addResult records rep in st: a sample in the open block (sealed into a
// segment when full, the oldest segment dropped beyond keepSegments), its
// body stored when new (the least recently used one dropped beyond
// KeepBodies).
func (s *Store) addResult(id string, st *stateV, rep *probe.Report, h *histOps) error {
	ref, raw, err := body(rep)
	if err != nil {
		return err
	}
	if i := slices.Index(st.Refs, ref); i >= 0 {
		st.Refs = slices.Delete(st.Refs, i, i+1)
	} else {
		h.puts[s.keys.Report(id, ref)] = raw
	}
	st.Refs = append([]string{ref}, st.Refs...)
	if len(st.Refs) > KeepBodies {
		for _, old := range st.Refs[KeepBodies:] {
			h.dels = append(h.dels, s.keys.Report(id, old))
		}
		st.Refs = st.Refs[:KeepBodies]
	}
	st.Last, st.LastAt, st.LastTiming = ref, rep.CheckedAt, rep.Timing
	if n, _ := decodeBlock(st.Block); len(n) >= SegmentSamples {
		h.puts[s.keys.Segment(id, st.Segs)] = st.Block
		if st.Segs >= keepSegments {
			h.dels = append(h.dels, s.keys.Segment(id, st.Segs-keepSegments))
			st.Count -= SegmentSamples
		}
		st.Segs++
		st.Block = nil
	}
	if st.Block, err = appendSample(st.Block, sampleOf(rep, ref)); err != nil {
		return fmt.Errorf("watch %s: %w", id, err)
	}
	st.Count++
	return nil
}

// lastReport is the watch's latest Report, nil before its first probe.
func (s *Store) lastReport(r *store.Record, st *stateV) *probe.Report {
	if st == nil || st.Last == "" {
		return nil
	}
	rep := s.report(r, st.Last, st.LastAt, st.LastTiming, probe.Status(st.LastStatus))
	return &rep
}

// report is a stored body with the time and timing of one probe; a body no
// longer kept gives a Report of the probe's status alone.
func (s *Store) report(r *store.Record, ref string, at time.Time, timing probe.Timing, status probe.Status) probe.Report {
	if kv, ok := s.mirror.Get(s.keys.Report(r.ID, ref)); ok {
		rep, err := decodeBody(kv.Value, at, timing)
		if err == nil {
			return rep
		}
		s.log.Warn("etcdstore: unreadable report", "id", r.ID, "ref", ref, "err", err)
	}
	return probe.Report{Target: r.Target, CheckedAt: at, Status: status, Reachable: status != probe.StatusDown,
		ExpiryStage: probe.StageNone, Findings: []probe.Finding{}, Timing: timing}
}

// History returns up to limit Reports of a watch, newest first. Sealed
// segments are read from etcd; when it cannot be reached, the newest
// samples (in the state) are what is returned.
func (s *Store) History(id string, limit int) ([]probe.Report, error) {
	r, st, err := s.record(id)
	if err != nil {
		return nil, err
	}
	out := []probe.Report{}
	if st == nil || limit <= 0 {
		return out, nil
	}
	samples, err := decodeBlock(st.Block)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: history of %s: %w", id, err)
	}
	if need := limit - len(samples); need > 0 && st.Segs > 0 {
		older, err := s.segments(id, (need+SegmentSamples-1)/SegmentSamples)
		if err != nil {
			s.log.Warn("etcdstore: history beyond the newest samples unavailable", "id", id, "err", err)
		}
		samples = append(older, samples...)
	}
	for i := len(samples) - 1; i >= 0 && len(out) < limit; i-- {
		sm := &samples[i]
		at, timing := sm.time(), sm.timingMS()
		if i == len(samples)-1 && st.Last == sm.refString() {
			at, timing = st.LastAt, st.LastTiming // exact for the latest
		}
		out = append(out, s.report(&r, sm.refString(), at, timing, sm.status))
	}
	return out, nil
}

// segments reads the newest n sealed segments of a watch, oldest sample
// first.
func (s *Store) segments(id string, n int) ([]sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.History(id), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(n)))
	if err != nil {
		return nil, err
	}
	slices.Reverse(resp.Kvs)
	return sealed(resp.Kvs)
}
