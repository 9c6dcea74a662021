package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/tools"
)

// The serve path of check_tls over stdio, in process: what the MCP layer
// (framing, JSON-RPC, the tool handler, encoding) adds to a probe. Compare
//
//	go test -run '^$' -bench 'Stdio|ProbeDirect' -benchmem ./cmd/tlswatch/
//
// BenchmarkStdioCheckTLS against BenchmarkProbeDirect (the same probe,
// called as a function); BenchmarkStdioPing is the transport alone.

type stdioBench struct {
	in  *io.PipeWriter
	out *bufio.Reader
	n   int
}

func startStdioBench(b *testing.B, deps tools.Deps) *stdioBench {
	b.Helper()
	srv := tools.NewServer(deps, tools.ServerOptions{})
	b.Cleanup(srv.Close)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	t := &stdioTransport{srv: srv.MCPServer, refuse: srv.ResourceRequestError, logger: slog.New(slog.DiscardHandler), maxLine: maxBodyBytes}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = t.serve(context.Background(), inR, outW)
		outW.Close()
	}()
	b.Cleanup(func() { inW.Close(); <-done })
	s := &stdioBench{in: inW, out: bufio.NewReaderSize(outR, 1<<20)}
	s.call(b, `"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}`)
	return s
}

// call sends one request (the members after "id") and reads its response.
func (s *stdioBench) call(b *testing.B, rest string) string {
	s.n++
	if _, err := fmt.Fprintf(s.in, `{"jsonrpc":"2.0","id":%d,%s}`+"\n", s.n, rest); err != nil {
		b.Fatal(err)
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return line
}

func benchDeps(b *testing.B) (tools.Deps, *testlab.Scenario) {
	sc := testlab.Start(b, testlab.NewPKI(b), testlab.ScenarioValid)
	return tools.Deps{ProbeOptions: probe.Options{Roots: sc.Roots}}, sc
}

func BenchmarkStdioCheckTLS(b *testing.B) {
	deps, sc := benchDeps(b)
	s := startStdioBench(b, deps)
	req := fmt.Sprintf(`"method":"tools/call","params":{"name":"check_tls","arguments":{"target":"%s:%d","ip":%q}}`, sc.Host, sc.Port, sc.IP)
	b.ReportAllocs()
	for b.Loop() {
		if line := s.call(b, req); !strings.Contains(line, `"status":"ok"`) {
			b.Fatalf("not ok: %.300s", line)
		}
	}
}

func BenchmarkProbeDirect(b *testing.B) {
	deps, sc := benchDeps(b)
	tgt := probe.Target{Host: sc.Host, Port: sc.Port, IP: sc.IP}
	b.ReportAllocs()
	for b.Loop() {
		if r, err := probe.Run(context.Background(), tgt, deps.ProbeOptions); err != nil || r.Status != probe.StatusOK {
			b.Fatalf("%v %v", r.Status, err)
		}
	}
}

func BenchmarkStdioPing(b *testing.B) {
	deps, _ := benchDeps(b)
	s := startStdioBench(b, deps)
	b.ReportAllocs()
	for b.Loop() {
		s.call(b, `"method":"ping"`)
	}
}
