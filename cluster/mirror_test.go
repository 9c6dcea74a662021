package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/internal/etcdlab"
)

type eventLog struct {
	mu  sync.Mutex
	evs []MirrorEvent
}

func (l *eventLog) add(evs []MirrorEvent) {
	l.mu.Lock()
	l.evs = append(l.evs, evs...)
	l.mu.Unlock()
}

func (l *eventLog) last(key string) (MirrorEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.evs) - 1; i >= 0; i-- {
		if l.evs[i].Key == key {
			return l.evs[i], true
		}
	}
	return MirrorEvent{}, false
}

func newMirror(t *testing.T, cli *clientv3.Client, prefix string, log *eventLog) *Mirror {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	m, err := NewMirror(ctx, cli, prefix, MirrorOptions{OnEvents: log.add, ProgressEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("mirror: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestMirror(t *testing.T) {
	s := etcdlab.Shared()
	cli, p := s.Client(t), etcdlab.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// More keys than one page of the initial load.
	var puts []clientv3.Op
	for i := 0; i < 2*mirrorPage+10; i++ {
		puts = append(puts, clientv3.OpPut(fmt.Sprintf("%sw_%05d", p, i), "v0"))
	}
	for len(puts) > 0 {
		n := min(len(puts), 100)
		if _, err := cli.Txn(ctx).Then(puts[:n]...).Commit(); err != nil {
			t.Fatal(err)
		}
		puts = puts[n:]
	}
	if _, err := cli.Put(ctx, p[:len(p)-1]+"x", "outside"); err != nil {
		t.Fatal(err)
	}
	log := &eventLog{}
	m := newMirror(t, cli, p, log)
	if m.Len() != 2*mirrorPage+10 {
		t.Fatalf("loaded %d keys, want %d", m.Len(), 2*mirrorPage+10)
	}

	put, err := cli.Put(ctx, p+"w_00001", "v1")
	if err != nil {
		t.Fatal(err)
	}
	del, err := cli.Delete(ctx, p+"w_00002")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitRev(ctx, del.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Get(p + "w_00001"); string(v.Value) != "v1" {
		t.Errorf("w_00001 = %q, want v1", v.Value)
	}
	if _, ok := m.Get(p + "w_00002"); ok {
		t.Error("w_00002 still there after its delete")
	}
	if ev, ok := log.last(p + "w_00001"); !ok || string(ev.Value) != "v1" || ev.Rev != put.Header.Revision {
		t.Errorf("event for w_00001: %+v, want v1 at %d", ev, put.Header.Revision)
	}
	if ev, ok := log.last(p + "w_00002"); !ok || !ev.Deleted {
		t.Errorf("event for w_00002: %+v, want a delete", ev)
	}
	if stale, _ := m.Stale(); stale {
		t.Error("a following mirror says it is stale")
	}
}

// Cut off from etcd, the mirror keeps answering from its copy, says it is
// stale and since when; back in touch it catches up, by a reload with the
// difference as events when etcd compacted what it missed.
func TestMirrorAcrossPartitionAndCompaction(t *testing.T) {
	s := etcdlab.Shared()
	proxy := etcdlab.NewProxy(t, s.Endpoint)
	cli, p := s.Client(t), etcdlab.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := cli.Put(ctx, p+k, "v0"); err != nil {
			t.Fatal(err)
		}
	}
	log := &eventLog{}
	m := newMirror(t, etcdlab.NewClient(t, proxy.Endpoint), p, log)

	proxy.Partition()
	waitFor(t, wait, "the mirror says it is stale", func() bool { s, _ := m.Stale(); return s })
	if v, ok := m.Get(p + "a"); !ok || string(v.Value) != "v0" {
		t.Fatalf("a stale mirror still answers: got %q %v", v.Value, ok)
	}
	if _, err := cli.Put(ctx, p+"a", "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, p+"b"); err != nil {
		t.Fatal(err)
	}
	last, err := cli.Put(ctx, p+"d", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, last.Header.Revision); err != nil {
		t.Fatal(err)
	}
	proxy.Heal()
	if err := m.WaitRev(ctx, last.Header.Revision); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "the mirror is current again", func() bool { s, _ := m.Stale(); return !s })
	want := map[string]string{p + "a": "v1", p + "c": "v0", p + "d": "v1"}
	got := map[string]string{}
	m.Range(p, func(k string, v KV) bool { got[k] = string(v.Value); return true })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after catching up: %v, want %v", got, want)
	}
	for key, deleted := range map[string]bool{p + "a": false, p + "b": true, p + "d": false} {
		if ev, ok := log.last(key); !ok || ev.Deleted != deleted {
			t.Errorf("event for %s: %+v (found %v), want deleted=%v", key, ev, ok, deleted)
		}
	}
}

// A node reads its own writes back at once (Note), and the watch bringing
// them later neither applies them again nor reports them; an older change
// never overwrites a newer noted one.
func TestMirrorNote(t *testing.T) {
	s := etcdlab.Shared()
	proxy := etcdlab.NewProxy(t, s.Endpoint)
	cli, p := s.Client(t), etcdlab.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	log := &eventLog{}
	m := newMirror(t, etcdlab.NewClient(t, proxy.Endpoint), p, log)
	// The watch is held back, as a busy one may be: the writes reach the
	// mirror by Note first.
	proxy.Partition()
	put, err := cli.Put(ctx, p+"d/own", "mine")
	if err != nil {
		t.Fatal(err)
	}
	m.Note(Written{Rev: put.Header.Revision, Puts: map[string][]byte{p + "d/own": []byte("mine")}})
	if kv, ok := m.Get(p + "d/own"); !ok || string(kv.Value) != "mine" || kv.ModRev != put.Header.Revision {
		t.Fatalf("noted key: %+v %v", kv, ok)
	}
	del, err := cli.Delete(ctx, p+"d/own")
	if err != nil {
		t.Fatal(err)
	}
	m.Note(Written{Rev: del.Header.Revision, DeletePrefixes: []string{p + "d/"}})
	other, err := cli.Put(ctx, p+"d/other", "theirs")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Heal()
	if err := m.WaitRev(ctx, other.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get(p + "d/own"); ok {
		t.Error("the watch brought a noted delete's key back")
	}
	if _, ok := log.last(p + "d/own"); ok {
		t.Error("the watch reported changes the node had noted")
	}
	if ev, ok := log.last(p + "d/other"); !ok || string(ev.Value) != "theirs" {
		t.Errorf("another writer's change: %+v %v", ev, ok)
	}
	n := 0
	m.Range(p+"d/", func(string, KV) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d keys under d/, want 1", n)
	}
}
