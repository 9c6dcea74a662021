package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// Reload marks the differences found by a reload (the watch fell
	// behind etcd's compaction): the changes in between are lost, only
	// their sum is known.
	Reload bool
}

// KV is a mirrored key's value with its revisions.
type KV struct {
	Value     []byte
	CreateRev int64 // the revision that created the key (orders entries)
	ModRev    int64 // the revision of its last change
}

// MirrorOptions configure NewMirror; zero values take the defaults.
type MirrorOptions struct {
	// OnEvents is told about changes, in revision order, from the mirror's
	// goroutine; it MUST NOT block for long. After a reload (the watch fell
	// behind etcd's compaction) it gets the difference as events. Changes
	// the mirror already holds (noted by Note) are not reported.
	OnEvents      func([]MirrorEvent)
	ProgressEvery time.Duration
	Logger        *slog.Logger
	// Skip names keys the mirror neither keeps nor reports (bulky data read
	// from etcd on demand).
	Skip func(key string) bool
}

// Mirror is a local copy of every key under a prefix, kept current by an
// etcd watch. Every node answers reads (list_watches, resources) from it,
// and keeps answering while etcd is unreachable: Stale says since when the
// copy may be behind. A node notes its own committed writes at once (Note),
// so that it reads them back before the watch delivers them. Keys are held
// per directory (the first path segment under the prefix), so that Range
// over one directory does not walk the others. Methods are safe for
// concurrent use.
type Mirror struct {
	cli    *clientv3.Client
	prefix string
	opts   MirrorOptions

	mu      sync.RWMutex
	dirs    map[string]map[string]KV // directory -> key -> KV
	n       int
	tomb    map[string]int64 // keys deleted by a noted write, until the watch passes it
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
	if opts.Skip == nil {
		opts.Skip = func(string) bool { return false }
	}
	m := &Mirror{cli: cli, prefix: prefix, opts: opts, moved: make(chan struct{}), done: make(chan struct{}),
		tomb: make(map[string]int64)}
	kvs, rev, err := m.load(ctx)
	if err != nil {
		return nil, err
	}
	m.dirs, m.rev, m.contact = make(map[string]map[string]KV), rev, time.Now()
	for k, kv := range kvs {
		m.setLocked(k, kv)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.follow()
	return m, nil
}

// dirOf is the directory of a key: its first path segment under the
// prefix, with the slash ("watches/"), or "" for a key without one.
func (m *Mirror) dirOf(key string) string {
	rest := strings.TrimPrefix(key, m.prefix)
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i+1]
	}
	return ""
}

func (m *Mirror) setLocked(key string, kv KV) {
	d := m.dirOf(key)
	dir := m.dirs[d]
	if dir == nil {
		dir = make(map[string]KV)
		m.dirs[d] = dir
	}
	if _, ok := dir[key]; !ok {
		m.n++
	}
	dir[key] = kv
}

func (m *Mirror) deleteLocked(key string) {
	if dir := m.dirs[m.dirOf(key)]; dir != nil {
		if _, ok := dir[key]; ok {
			delete(dir, key)
			m.n--
		}
	}
}

func (m *Mirror) getLocked(key string) (KV, bool) {
	kv, ok := m.dirs[m.dirOf(key)][key]
	return kv, ok
}

// load reads the prefix at one revision, a page at a time.
func (m *Mirror) load(ctx context.Context) (map[string]KV, int64, error) {
	kvs := make(map[string]KV)
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
			if k := string(kv.Key); !m.opts.Skip(k) {
				kvs[k] = KV{Value: kv.Value, CreateRev: kv.CreateRevision, ModRev: kv.ModRevision}
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return kvs, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Get returns key's value and revisions, as last seen.
func (m *Mirror) Get(key string) (KV, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.getLocked(key)
}

// Range calls fn for every key under prefix (in no order) until fn returns
// false. prefix is the mirror's prefix, or a path under it; only the
// directory of prefix is walked. fn MUST NOT call the mirror's other
// methods.
func (m *Mirror) Range(prefix string, fn func(key string, kv KV) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	walk := func(dir map[string]KV) bool {
		for k, kv := range dir {
			if strings.HasPrefix(k, prefix) && !fn(k, kv) {
				return false
			}
		}
		return true
	}
	if prefix == m.prefix {
		for _, dir := range m.dirs {
			if !walk(dir) {
				return
			}
		}
		return
	}
	walk(m.dirs[m.dirOf(prefix)])
}

// Len is the number of keys.
func (m *Mirror) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.n
}

// Written is a Txn this node committed, as Note takes it.
type Written struct {
	Rev            int64
	Puts           map[string][]byte
	Deletes        []string
	DeletePrefixes []string // range deletes: every key under each
}

// Note applies a write this node committed at w.Rev, so that it reads its
// own writes back at once, before the watch brings them. A key that the
// mirror already holds at a later revision is left alone, and the watch's
// events at or before a noted revision are neither applied again nor
// reported.
func (m *Mirror) Note(w Written) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range w.Puts {
		if m.opts.Skip(k) {
			continue
		}
		cur, ok := m.getLocked(k)
		if ok && cur.ModRev >= w.Rev {
			continue
		}
		create := w.Rev
		if ok {
			create = cur.CreateRev
		}
		m.setLocked(k, KV{Value: v, CreateRev: create, ModRev: w.Rev})
		delete(m.tomb, k)
	}
	del := func(k string, cur KV) {
		if cur.ModRev < w.Rev {
			m.deleteLocked(k)
			m.tomb[k] = w.Rev
		}
	}
	for _, k := range w.Deletes {
		if cur, ok := m.getLocked(k); ok {
			del(k, cur)
		} else if m.tomb[k] < w.Rev {
			m.tomb[k] = w.Rev
		}
	}
	for _, p := range w.DeletePrefixes {
		for k, cur := range m.dirs[m.dirOf(p)] {
			if strings.HasPrefix(k, p) {
				del(k, cur)
			}
		}
	}
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
// Events at or before what the mirror holds for their key (a noted write of
// this node) are skipped.
func (m *Mirror) apply(evs []*clientv3.Event, rev int64) {
	out := make([]MirrorEvent, 0, len(evs))
	m.mu.Lock()
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		if m.opts.Skip(key) {
			continue
		}
		cur, ok := m.getLocked(key)
		if (ok && cur.ModRev >= ev.Kv.ModRevision) || m.tomb[key] >= ev.Kv.ModRevision {
			continue
		}
		me := MirrorEvent{Key: key, Rev: ev.Kv.ModRevision}
		if ev.Type == mvccpb.DELETE {
			me.Deleted = true
			m.deleteLocked(key)
		} else {
			me.Value = ev.Kv.Value
			m.setLocked(key, KV{Value: ev.Kv.Value, CreateRev: ev.Kv.CreateRevision, ModRev: ev.Kv.ModRevision})
		}
		out = append(out, me)
	}
	m.advance(rev)
	for k, r := range m.tomb {
		if r <= m.rev {
			delete(m.tomb, k)
		}
	}
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
// Keys noted after the load's revision keep their noted value.
func (m *Mirror) reload() error {
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	kvs, rev, err := m.load(ctx)
	if err != nil {
		return err
	}
	var out []MirrorEvent
	m.mu.Lock()
	for _, dir := range m.dirs {
		for k, cur := range dir {
			if cur.ModRev > rev {
				kvs[k] = cur // noted after the load
				continue
			}
			if _, ok := kvs[k]; !ok && m.tomb[k] <= rev {
				out = append(out, MirrorEvent{Key: k, Deleted: true, Rev: rev, Reload: true})
			}
		}
	}
	for k, kv := range kvs {
		if old, ok := m.getLocked(k); !ok || string(old.Value) != string(kv.Value) {
			if m.tomb[k] <= rev {
				out = append(out, MirrorEvent{Key: k, Value: kv.Value, Rev: rev, Reload: true})
			}
		}
	}
	m.dirs, m.n = make(map[string]map[string]KV), 0
	for k, kv := range kvs {
		if m.tomb[k] > rev {
			continue
		}
		m.setLocked(k, kv)
	}
	m.advance(rev)
	m.mu.Unlock()
	if len(out) > 0 && m.opts.OnEvents != nil {
		m.opts.OnEvents(out)
	}
	return nil
}
