package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultProgressEvery is how often a Mirror asks etcd to confirm that its
// watch is current. Three silent periods make the mirror stale.
const DefaultProgressEvery = time.Second

// mirrorPage bounds one read of the initial load, so 100,000 watches do not
// come back as one huge response.
const mirrorPage = 1000

// MirrorEvent is one change of a mirrored key, applied to the mirror before
// it is reported.
type MirrorEvent struct {
	Key     string
	Value   []byte // nil when Deleted
	Deleted bool
	Rev     int64 // the revision of the change
}

// MirrorOptions configure NewMirror; zero values take the defaults.
type MirrorOptions struct {
	// OnEvents is told about changes, in revision order, from the mirror's
	// goroutine; it MUST NOT block for long. After a reload (the watch fell
	// behind etcd's compaction) it gets the difference as events.
	OnEvents      func([]MirrorEvent)
	ProgressEvery time.Duration
	Logger        *slog.Logger
}

// Mirror is a local copy of every key under a prefix, kept current by an
// etcd watch. Every node answers reads (list_watches, resources) from it,
// and keeps answering while etcd is unreachable: Stale says since when the
// copy may be behind. Methods are safe for concurrent use.
type Mirror struct {
	cli    *clientv3.Client
	prefix string
	opts   MirrorOptions

	mu      sync.RWMutex
	kvs     map[string][]byte
	rev     int64
	contact time.Time     // last word from etcd: an event or a progress notice
	moved   chan struct{} // closed when rev advances
	stale   bool

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// NewMirror loads everything under prefix (within ctx) and follows it until
// Close.
func NewMirror(ctx context.Context, cli *clientv3.Client, prefix string, opts MirrorOptions) (*Mirror, error) {
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = DefaultProgressEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Mirror{cli: cli, prefix: prefix, opts: opts, moved: make(chan struct{}), done: make(chan struct{})}
	kvs, rev, err := m.load(ctx)
	if err != nil {
		return nil, err
	}
	m.kvs, m.rev, m.contact = kvs, rev, time.Now()
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.follow()
	return m, nil
}

// load reads the prefix at one revision, a page at a time.
func (m *Mirror) load(ctx context.Context) (map[string][]byte, int64, error) {
	kvs := make(map[string][]byte)
	var rev int64
	from := m.prefix
	end := clientv3.GetPrefixRangeEnd(m.prefix)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(mirrorPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := m.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("cluster: load %s: %w", m.prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			kvs[string(kv.Key)] = kv.Value
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return kvs, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Get returns the value of key, as last seen.
func (m *Mirror) Get(key string) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.kvs[key]
	return v, ok
}

// Range calls fn for every key (in no order) until fn returns false. fn
// MUST NOT call the mirror's other methods.
func (m *Mirror) Range(fn func(key string, value []byte) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, v := range m.kvs {
		if !fn(k, v) {
			return
		}
	}
}

// Len is the number of keys.
func (m *Mirror) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.kvs)
}

// Rev is the etcd revision the mirror is current to.
func (m *Mirror) Rev() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev
}

// WaitRev returns once the mirror has applied everything up to rev: a node
// that just claimed a shard at rev reads its watches' state from the mirror
// only after this, so it sees every write of the previous owner.
func (m *Mirror) WaitRev(ctx context.Context, rev int64) error {
	for {
		m.mu.RLock()
		cur, moved := m.rev, m.moved
		m.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("cluster: mirror of %s at revision %d, waiting for %d: %w", m.prefix, cur, rev, ctx.Err())
		}
	}
}

// Stale reports whether the mirror may be behind etcd (no word from etcd
// for three progress periods), and the last time it was known current.
func (m *Mirror) Stale() (stale bool, asOf time.Time) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return time.Since(m.contact) > 3*m.opts.ProgressEvery, m.contact
}

// Close stops following.
func (m *Mirror) Close() {
	m.cancel()
	<-m.done
}

// follow runs watches until Close, re-watching after errors and reloading
// when the watch fell behind compaction.
func (m *Mirror) follow() {
	defer close(m.done)
	for m.ctx.Err() == nil {
		err := m.watch()
		if errors.Is(err, errCompacted) {
			err = m.reload()
		}
		if err != nil && m.ctx.Err() == nil {
			m.opts.Logger.Debug("cluster: mirror watch", "prefix", m.prefix, "err", err)
			t := time.NewTimer(m.opts.ProgressEvery)
			select {
			case <-t.C:
			case <-m.ctx.Done():
				t.Stop()
			}
		}
	}
}

var errCompacted = errors.New("watch fell behind compaction")

func (m *Mirror) watch() error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(m.ctx))
	defer cancel()
	wch := m.cli.Watch(wctx, m.prefix, clientv3.WithPrefix(), clientv3.WithRev(m.Rev()+1), clientv3.WithProgressNotify())
	tick := time.NewTicker(m.opts.ProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return nil
		case wr, ok := <-wch:
			switch {
			case !ok:
				return errors.New("watch closed")
			case wr.CompactRevision != 0:
				return errCompacted
			case wr.Err() != nil:
				return wr.Err()
			}
			m.apply(wr.Events, wr.Header.Revision)
		case <-tick.C:
			// Answered on the watch stream by a progress notice, which
			// proves the mirror current (etcd 3.4 and later).
			rctx, rcancel := context.WithTimeout(wctx, m.opts.ProgressEvery)
			m.cli.RequestProgress(rctx)
			rcancel()
			m.noteStale()
		}
	}
}

// apply applies a watch response (events, or a progress notice with none).
func (m *Mirror) apply(evs []*clientv3.Event, rev int64) {
	out := make([]MirrorEvent, 0, len(evs))
	m.mu.Lock()
	for _, ev := range evs {
		me := MirrorEvent{Key: string(ev.Kv.Key), Rev: ev.Kv.ModRevision}
		if ev.Type == mvccpb.DELETE {
			me.Deleted = true
			delete(m.kvs, me.Key)
		} else {
			me.Value = ev.Kv.Value
			m.kvs[me.Key] = me.Value
		}
		out = append(out, me)
	}
	m.advance(rev)
	m.mu.Unlock()
	m.noteStale()
	if len(out) > 0 && m.opts.OnEvents != nil {
		m.opts.OnEvents(out)
	}
}

// advance records contact at rev; m.mu is held.
func (m *Mirror) advance(rev int64) {
	m.contact = time.Now()
	if rev > m.rev {
		m.rev = rev
		close(m.moved)
		m.moved = make(chan struct{})
	}
}

// noteStale logs the transitions of the staleness mark.
func (m *Mirror) noteStale() {
	stale, asOf := m.Stale()
	m.mu.Lock()
	changed := stale != m.stale
	m.stale = stale
	m.mu.Unlock()
	switch {
	case changed && stale:
		m.opts.Logger.Warn("cluster: etcd unreachable; answering from the local copy", "prefix", m.prefix, "as_of", asOf)
	case changed:
		m.opts.Logger.Info("cluster: etcd reachable again; local copy current", "prefix", m.prefix)
	}
}

// reload replaces the copy with a fresh load and reports the difference.
func (m *Mirror) reload() error {
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	kvs, rev, err := m.load(ctx)
	if err != nil {
		return err
	}
	var out []MirrorEvent
	m.mu.Lock()
	for k, v := range kvs {
		if old, ok := m.kvs[k]; !ok || string(old) != string(v) {
			out = append(out, MirrorEvent{Key: k, Value: v, Rev: rev})
		}
	}
	for k := range m.kvs {
		if _, ok := kvs[k]; !ok {
			out = append(out, MirrorEvent{Key: k, Deleted: true, Rev: rev})
		}
	}
	m.kvs = kvs
	m.advance(rev)
	m.mu.Unlock()
	if len(out) > 0 && m.opts.OnEvents != nil {
		m.opts.OnEvents(out)
	}
	return nil
}
