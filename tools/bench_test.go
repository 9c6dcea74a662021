package tools

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/owner"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// list_expiring through the MCP path: a JSON-RPC tools/call handled by the
// MCP server over the real watch.Service (the owning process, 100,000
// watches in bbolt, ~1,200 of them expiring within 30 days or down), up to
// the response marshalled to the bytes the transport writes:
//
//	go test -run '^$' -bench 'ListExpiringTool100k' -benchtime 20x -count 5 ./tools/
//
// The database (watchtest.FillDatabase, as watch/owner's benchmarks) is
// built once per benchmark run, about 10 s.

const benchToolWatches = 100_000

func benchToolDB(b *testing.B) string {
	b.Helper()
	rep := watchtest.SeedReport(b)
	dir, err := os.MkdirTemp("", "tlswatch-tools-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "bench.db")
	if err := watchtest.FillDatabase(path, benchToolWatches, rep); err != nil {
		b.Fatal(err)
	}
	return path
}

func BenchmarkListExpiringTool100k(b *testing.B) {
	path := benchToolDB(b)
	m, err := owner.Open(context.Background(), owner.Config{DBPath: path, Engine: watch.Config{NoScheduler: true}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	srv := NewServer(Deps{Watch: m}, ServerOptions{})
	defer srv.Close()
	ctx := context.Background()
	msg := json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_expiring","arguments":{"within_days":30,"limit":1000}}}`)
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
			if _, err := m.Expiring(ctx, nil, "", watch.MaxPageLimit); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stage=encode-once", func(b *testing.B) {
		l, err := m.Expiring(ctx, nil, "", watch.MaxPageLimit)
		if err != nil {
			b.Fatal(err)
		}
		v := ExpiringList{WithinDays: l.WithinDays, Watches: normalizeWatches(l.Watches)}
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
