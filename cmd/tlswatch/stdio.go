package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/probe"
)

// stdioTransport serves MCP over stdin/stdout with mcp-go's message
// handling (MCPServer.HandleMessage) but its own framing, in place of
// mcp-go's StdioServer, for what that one cannot do:
//
//   - a request the client cancelled gets no response (the handler's
//     context is cancelled by mcp-go; its late answer is dropped here);
//   - requests naming a resource this server does not have get -32002
//     before they reach a handler (refuse);
//   - a line longer than maxLine is refused without being held in memory;
//   - one goroutine hand-off per request instead of three (a reader
//     goroutine per line, a worker queue): the transport is on the latency
//     path of every check_tls.
//
// Requests run concurrently, at most maxConcurrent at once (the reader
// waits for a slot, which pushes back on the client); notifications are
// handled in order on the reader. Every write is one whole line.
type stdioTransport struct {
	srv     *server.MCPServer
	refuse  func(ctx context.Context, session, method string, params json.RawMessage) *mcp.JSONRPCErrorDetails
	logger  *slog.Logger
	maxLine int

	sess    *stdioSession
	out     io.Writer
	outMu   sync.Mutex
	slots   chan struct{}
	flights *flights

	mu     sync.Mutex // guards closed and wg.Add against wg.Wait
	closed bool
	wg     sync.WaitGroup
}

const (
	stdioMaxConcurrent = 64
	stdioReadBuffer    = 64 << 10
)

// serve runs until stdin ends or ctx is cancelled; in-flight requests are
// then cancelled and waited for.
func (t *stdioTransport) serve(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	t.out, t.slots, t.flights = stdout, make(chan struct{}, stdioMaxConcurrent), newFlights()
	sess := newStdioSession()
	t.sess = sess
	if err := t.srv.RegisterSession(ctx, sess); err != nil {
		return fmt.Errorf("register stdio session: %w", err)
	}
	defer t.srv.UnregisterSession(context.WithoutCancel(ctx), sess.SessionID())
	ctx, cancel := context.WithCancel(t.srv.WithContext(ctx, sess))
	defer cancel()

	notesDone := make(chan struct{})
	go func() {
		defer close(notesDone)
		t.writeNotifications(ctx, sess.notes)
	}()
	readDone := make(chan error, 1)
	go func() { readDone <- t.readLoop(ctx, stdin) }()
	var err error
	select {
	case err = <-readDone:
	case <-ctx.Done():
	}
	cancel()
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
	<-notesDone
	return err
}

// readLoop reads one JSON-RPC message per line until EOF.
func (t *stdioTransport) readLoop(ctx context.Context, stdin io.Reader) error {
	rd := bufio.NewReaderSize(stdin, stdioReadBuffer)
	for ctx.Err() == nil {
		line, err := readLine(rd, t.maxLine)
		switch {
		case errors.Is(err, errLineTooLong):
			t.writeError(nil, mcp.PARSE_ERROR, fmt.Sprintf("message longer than %d bytes; not read", t.maxLine))
			continue
		case errors.Is(err, io.EOF) && len(line) == 0:
			return nil
		case err != nil && !errors.Is(err, io.EOF):
			return fmt.Errorf("read stdin: %w", err)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			t.dispatch(ctx, line)
		}
		if err != nil {
			return nil // EOF after a last line without newline
		}
	}
	return nil
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline. A line over max
// bytes is skipped up to its newline and reported as errLineTooLong,
// having held at most max bytes.
func readLine(rd *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := rd.ReadSlice('\n')
		if len(line)+len(chunk) > max {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = rd.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

// dispatch handles one message: notifications in order, here; requests on
// their own goroutine.
func (t *stdioTransport) dispatch(ctx context.Context, line []byte) {
	var env envelope
	if err := json.Unmarshal(line, &env); err != nil {
		t.writeError(nil, mcp.PARSE_ERROR, "Parse error: "+err.Error())
		return
	}
	if !env.isRequest() {
		if env.Method == string(mcp.MethodNotificationCancelled) {
			t.flights.cancel(stdioSessionID, env.Params)
		}
		t.handle(ctx, nil, line) // notifications, and responses to us
		return
	}
	if !t.sess.Initialized() && !preInitialize(&env) {
		t.writeError(env.ID, mcp.INVALID_REQUEST, fmt.Sprintf("%s before initialize: send initialize first", probe.Clip(env.Method, 64)))
		return
	}
	if t.refuse != nil {
		if e := t.refuse(ctx, stdioSessionID, env.Method, env.Params); e != nil {
			t.write(mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: requestID(env.ID), Error: *e})
			return
		}
	}
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.slots
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	f, done := t.flights.start(stdioSessionID, env.ID)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.slots }()
		defer done()
		resp := t.handle(ctx, env.ID, line)
		f.mu.Lock()
		cancelled := f.cancelled
		f.mu.Unlock()
		if resp != nil && !cancelled {
			t.write(resp)
		}
	}()
}

// preInitialize reports whether a request may come before initialize: the
// initialize itself, ping, and any 2026-07-28 request (that revision has
// no handshake; each request declares its version).
func preInitialize(env *envelope) bool {
	switch mcp.MCPMethod(env.Method) {
	case mcp.MethodInitialize, mcp.MethodPing:
		return true
	}
	return mcp.IsModernProtocol(env.metaVersion())
}

// handle runs the message through mcp-go; a panic becomes an internal
// error response (to a request) instead of the end of the process.
func (t *stdioTransport) handle(ctx context.Context, id json.RawMessage, msg []byte) (resp mcp.JSONRPCMessage) {
	defer func() {
		if p := recover(); p != nil {
			t.logger.Error("panic serving a stdio message", "panic", p)
			resp = nil
			if id != nil {
				resp = mcp.NewJSONRPCError(requestID(id), mcp.INTERNAL_ERROR, fmt.Sprintf("internal error: %v", p), nil)
			}
		}
	}()
	return t.srv.HandleMessage(ctx, msg)
}

func requestID(raw json.RawMessage) mcp.RequestId {
	var id any
	_ = json.Unmarshal(raw, &id)
	return mcp.NewRequestId(id)
}

func (t *stdioTransport) writeError(id json.RawMessage, code int, message string) {
	t.write(mcp.NewJSONRPCError(requestID(id), code, message, nil))
}

// write sends one message as one line.
func (t *stdioTransport) write(msg any) {
	b, err := json.Marshal(msg)
	if err != nil {
		t.logger.Error("encode a stdio message", "err", err)
		return
	}
	b = append(b, '\n')
	t.outMu.Lock()
	defer t.outMu.Unlock()
	if _, err := t.out.Write(b); err != nil {
		t.logger.Debug("write to stdout", "err", err)
	}
}

func (t *stdioTransport) writeNotifications(ctx context.Context, notes <-chan mcp.JSONRPCNotification) {
	for {
		select {
		case n := <-notes:
			t.write(n)
		case <-ctx.Done():
			return
		}
	}
}
