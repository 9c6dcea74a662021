package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// list_expiring through the MCP path (issues 3 and 7): a JSON-RPC
// tools/call handled by the MCP server over the real watch.Service (the
// owning process, 100,000 watches in bbolt, ~1,200 of them expiring within
// 30 days or down), up to the response marshalled to the bytes the
// transport writes:
//
//	go test -run '^$' -bench 'ListExpiringTool100k' -benchtime 20x -count 5 ./tools/
//
// The database (the same shape as watch's BenchmarkExpiring30) is built
// once per benchmark run, about 10 s.

const benchToolWatches = 100_000

func benchToolDB(b *testing.B) string {
	b.Helper()
	sc := testlab.Start(b, testlab.NewPKI(b), testlab.ScenarioValid)
	tgt := probe.Target{Host: sc.Host, Port: sc.Port, IP: sc.IP, Timeout: 5 * time.Second}
	rep, err := probe.Run(context.Background(), tgt, probe.Options{Roots: sc.Roots, Now: sc.Now})
	if err != nil || rep.Leaf == nil {
		b.Fatalf("seed probe: %v %+v", err, rep.Findings)
	}
	dir, err := os.MkdirTemp("", "tlswatch-tools-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "bench.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	const batch = 2000
	for i := 0; i < benchToolWatches; i += batch {
		ups := make([]store.Update, 0, batch)
		for j := i; j < i+batch; j++ {
			days, state := 31+j%360, "up"
			switch {
			case j%100 == 7:
				days = j % 30 // 1%: within 30 days
			case j%500 == 11:
				state = "down" // 0.2%
			}
			notAfter := now.Add(time.Duration(days)*24*time.Hour + time.Hour)
			r := rep
			r.Target.Host = fmt.Sprintf("host%06d.example.com", j)
			r.CheckedAt = now.Add(-time.Duration(j%3600) * time.Second)
			leaf := *r.Leaf
			leaf.NotAfter, leaf.DaysRemaining, leaf.SHA256 = notAfter, days, fmt.Sprintf("%064x", j)
			r.Leaf = &leaf
			rec := store.Record{ID: fmt.Sprintf("w_%016x", uint64(j)*0x9e3779b97f4a7c15), Target: r.Target,
				Schedule: "@every 6h", Thresholds: []int{30, 14, 7, 1}, FailureThreshold: 3, CreatedAt: now, UpdatedAt: now,
				State: state, LastCheckedAt: r.CheckedAt, LastStatus: string(r.Status), NotAfter: notAfter, Fingerprint: leaf.SHA256}
			ups = append(ups, store.Update{Record: rec, Create: true, Report: &r})
		}
		if _, err := db.Apply(ups); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

func BenchmarkListExpiringTool100k(b *testing.B) {
	path := benchToolDB(b)
	m, err := watch.Open(context.Background(), watch.Config{DBPath: path, NoScheduler: true,
		Probe: func(context.Context, probe.Target, probe.Options) (probe.Report, error) {
			return probe.Report{}, fmt.Errorf("benchmark: no probes")
		}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	srv := NewServer(Deps{Watch: m}, ServerOptions{})
	defer srv.Close()
	ctx := context.Background()
	msg := json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_expiring","arguments":{"within_days":30}}}`)
	call := func() int {
		resp := srv.HandleMessage(ctx, msg)
		raw, err := json.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		return len(raw)
	}
	// The first call after start reads the Reports from bbolt; report it
	// apart from the steady state.
	start := time.Now()
	size := call()
	first := time.Since(start)
	var out struct {
		Result struct {
			IsError           bool         `json:"isError"`
			StructuredContent ExpiringList `json:"structuredContent"`
		} `json:"result"`
	}
	raw, _ := json.Marshal(srv.HandleMessage(ctx, msg))
	if err := json.Unmarshal(raw, &out); err != nil || out.Result.IsError || len(out.Result.StructuredContent.Watches) < 1000 {
		b.Fatalf("list_expiring: err %v, isError %v, %d watches: %.300s", err, out.Result.IsError, len(out.Result.StructuredContent.Watches), raw)
	}
	// Where the time goes: the watch.Service call alone; one json.Marshal
	// of the result (the floor of any JSON answer); the tool handler
	// (service + the handler's indented JSON text block); the whole path up
	// to the bytes on the wire (mcp-go marshals structuredContent and the
	// text block again).
	b.Run("stage=service", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Expiring(ctx, 30); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stage=encode-once", func(b *testing.B) {
		ws, err := m.Expiring(ctx, 30)
		if err != nil {
			b.Fatal(err)
		}
		v := ExpiringList{WithinDays: 30, Watches: normalizeWatches(ws)}
		for b.Loop() {
			if _, err := json.Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stage=handler", func(b *testing.B) {
		for b.Loop() {
			srv.HandleMessage(ctx, msg)
		}
	})
	b.Run("stage=wire", func(b *testing.B) {
		for b.Loop() {
			call()
		}
		b.ReportMetric(float64(len(out.Result.StructuredContent.Watches)), "watches")
		b.ReportMetric(float64(size)/(1<<20), "response-MiB")
		b.ReportMetric(float64(first.Microseconds())/1000, "first-call-ms")
	})
}
