package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/internal/etcdlab"
)

// outcomes collects the done calls of a Batcher's writes.
type outcomes struct {
	mu   sync.Mutex
	errs map[string]error
	wg   sync.WaitGroup
}

func (o *outcomes) done(name string) func(error) {
	o.wg.Add(1)
	return func(err error) {
		o.mu.Lock()
		o.errs[name] = err
		o.mu.Unlock()
		o.wg.Done()
	}
}

func revision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "rev", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestBatcher(t *testing.T) {
	cli, k, a := loneNode(t)
	b := a.NewBatcher(time.Hour) // flushes only when asked
	defer b.Close()

	t.Run("groups writes into few Txns", func(t *testing.T) {
		o := &outcomes{errs: map[string]error{}}
		before := revision(t, cli)
		const writes = 300
		for i := 0; i < writes; i++ {
			id := fmt.Sprintf("w_%d", i)
			c, _ := a.Owns(id)
			b.Add(c, []clientv3.Op{clientv3.OpPut(k.State(id), "up")}, false, o.done(id))
		}
		b.Flush()
		o.wg.Wait()
		for id, err := range o.errs {
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		}
		// Each Txn is one revision: 127 writes and the stamp per Txn.
		if txns := revision(t, cli) - before; txns != 3 {
			t.Errorf("%d writes took %d Txns, want 3", writes, txns)
		}
	})

	t.Run("a later write of a key wins", func(t *testing.T) {
		o := &outcomes{errs: map[string]error{}}
		c, _ := a.Owns("w_dup")
		b.Add(c, []clientv3.Op{clientv3.OpPut(k.State("w_dup"), "first")}, false, o.done("1"))
		b.Add(c, []clientv3.Op{clientv3.OpPut(k.State("w_dup"), "second")}, true, o.done("2"))
		o.wg.Wait()
		if o.errs["1"] != nil || o.errs["2"] != nil {
			t.Fatalf("outcomes %v", o.errs)
		}
		if got := get(t, cli, k.State("w_dup")); got != "second" {
			t.Fatalf("value %q, want second", got)
		}
	})

	t.Run("a lost shard fails only its own writes", func(t *testing.T) {
		o := &outcomes{errs: map[string]error{}}
		good, _ := a.Owns("w_good")
		stale, _ := a.Claim((good.Shard + 1) % a.Shards())
		stale.Rev-- // what a node that missed a takeover would hold
		b.Add(good, []clientv3.Op{clientv3.OpPut(k.State("w_good"), "up")}, false, o.done("good"))
		b.Add(stale, []clientv3.Op{clientv3.OpPut(k.State("w_stale"), "up")}, true, o.done("stale"))
		o.wg.Wait()
		if o.errs["good"] != nil || !errors.Is(o.errs["stale"], ErrNotOwner) {
			t.Fatalf("outcomes %v, want good nil and stale ErrNotOwner", o.errs)
		}
		if get(t, cli, k.State("w_good")) != "up" || get(t, cli, k.State("w_stale")) != "" {
			t.Fatal("the good write should land and the stale one not")
		}
	})
}

// A write queued while etcd cannot be reached commits once when it comes
// back within the lease; one whose claim ends first is refused, not lost in
// silence.
func TestBatcherAcrossPartition(t *testing.T) {
	s := etcdlab.Shared()
	proxy := etcdlab.NewProxy(t, s.Endpoint)
	cli, k := s.Client(t), testKeys(t)
	a, _ := startNode(t, etcdlab.NewClient(t, proxy.Endpoint), k, "a", func(c *Config) { c.TTL = 5 * time.Second })
	waitFor(t, wait, "a settles", func() bool { return settled(t, cli, k, a) })
	b := a.NewBatcher(time.Hour)
	defer b.Close()
	o := &outcomes{errs: map[string]error{}}
	c, _ := a.Owns("w_1")

	proxy.Partition()
	b.Add(c, []clientv3.Op{clientv3.OpPut(k.State("w_1"), "up")}, true, o.done("short"))
	time.Sleep(time.Second) // well inside the lease
	proxy.Heal()
	o.wg.Wait()
	if err := o.errs["short"]; err != nil {
		t.Fatalf("write across a short partition: %v", err)
	}

	proxy.Partition()
	b.Add(c, []clientv3.Op{clientv3.OpPut(k.State("w_1"), "late")}, true, o.done("long"))
	o.wg.Wait() // ends when the lease timer gives the claim up
	if err := o.errs["long"]; !errors.Is(err, ErrNotOwner) {
		t.Fatalf("write across a partition longer than the lease: %v, want ErrNotOwner", err)
	}
	proxy.Heal()
	if got := get(t, cli, k.State("w_1")); got != "up" {
		t.Fatalf("state %q, want up (the refused write must not land)", got)
	}
}

// An attempt that landed but whose answer was lost is not applied again on
// retry: an outbox entry delivered (deleted) in between stays delivered.
func TestBatcherRetryAfterLostAnswer(t *testing.T) {
	cli, k, a := loneNode(t)
	c, _ := a.Owns("w_1")
	entry := k.OutboxEntry(c.Shard, 7)

	for _, tc := range []struct {
		name    string
		writers bool // the writer key exists before (not the node's first Txn)
	}{{"first Txn of the node", false}, {"later Txn", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if _, err := cli.Delete(ctx, k.Writer("a")); err != nil {
				t.Fatal(err)
			}
			if tc.writers {
				if _, err := cli.Put(ctx, k.Writer("a"), "older"); err != nil {
					t.Fatal(err)
				}
			}
			b := a.NewBatcher(time.Hour)
			defer b.Close()
			b.loseAnswer = func(attempt int) bool {
				if attempt > 0 {
					return false
				}
				// Landed; the deliverer sees it and delivers it meanwhile.
				if get(t, cli, entry) != "alert" {
					t.Error("the first attempt did not land")
				}
				if _, err := cli.Delete(ctx, entry); err != nil {
					t.Error(err)
				}
				return true
			}
			o := &outcomes{errs: map[string]error{}}
			b.Add(c, []clientv3.Op{clientv3.OpPut(entry, "alert")}, true, o.done("w"))
			o.wg.Wait()
			if err := o.errs["w"]; err != nil {
				t.Fatalf("outcome %v, want nil (it landed)", err)
			}
			if got := get(t, cli, entry); got != "" {
				t.Fatalf("the delivered entry came back: %q", got)
			}
		})
	}
}

// A write whose own condition fails is refused alone (ErrConflict), the
// others of its Txn commit; writes drawing from the sequence get
// consecutive numbers, drawn again when another writer moved it.
func TestBatcherConditionsAndSequence(t *testing.T) {
	cli, k, a := loneNode(t)
	cfg := a.BatcherConfig(time.Hour)
	cfg.SeqKey = k.FeedSeq()
	b := NewBatcher(cfg)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := cli.Put(ctx, k.State("w_cas"), "v1"); err != nil {
		t.Fatal(err)
	}
	results := make([]Result, 4)
	var wg sync.WaitGroup
	submit := func(i int, w Write) {
		wg.Add(1)
		w.Done = func(r Result) { results[i] = r; wg.Done() }
		b.Submit(w)
	}
	seqOps := func(name string) func(uint64) []clientv3.Op {
		return func(first uint64) []clientv3.Op {
			return []clientv3.Op{clientv3.OpPut(k.FeedEntry(first), name), clientv3.OpPut(k.FeedEntry(first+1), name)}
		}
	}
	c, _ := a.Owns("w_1")
	submit(0, Write{Claim: c, Ops: []clientv3.Op{clientv3.OpPut(k.State("w_1"), "up")}, Seq: 2, SeqOps: seqOps("first")})
	submit(1, Write{Ctx: ctx, Cmps: []clientv3.Cmp{clientv3.Compare(clientv3.Value(k.State("w_cas")), "=", "v0")},
		Ops: []clientv3.Op{clientv3.OpPut(k.State("w_cas"), "lost")}, Seq: 2, SeqOps: seqOps("lost")})
	submit(2, Write{Ctx: ctx, Ops: []clientv3.Op{clientv3.OpPut(k.State("w_2"), "up")}, Seq: 2, SeqOps: seqOps("second")})
	b.Flush()
	wg.Wait()
	if results[0].Err != nil || results[2].Err != nil || !errors.Is(results[1].Err, ErrConflict) {
		t.Fatalf("results %+v", results)
	}
	if results[0].First != 1 || results[2].First != 3 || get(t, cli, k.State("w_cas")) != "v1" {
		t.Fatalf("numbers %d and %d (want 1 and 3); w_cas %q", results[0].First, results[2].First, get(t, cli, k.State("w_cas")))
	}
	// Another writer takes numbers 5 and 6: the next write gets 7.
	if _, err := cli.Put(ctx, k.FeedSeq(), "6"); err != nil {
		t.Fatal(err)
	}
	submit(3, Write{Ctx: ctx, Ops: []clientv3.Op{clientv3.OpPut(k.State("w_3"), "up")}, Seq: 2, SeqOps: seqOps("third"), Urgent: true})
	wg.Wait()
	if r := results[3]; r.Err != nil || r.First != 7 || get(t, cli, k.FeedEntry(8)) != "third" || get(t, cli, k.FeedSeq()) != "8" {
		t.Fatalf("after another writer: %+v, entry 8 %q, sequence %q", r, get(t, cli, k.FeedEntry(8)), get(t, cli, k.FeedSeq()))
	}
}
