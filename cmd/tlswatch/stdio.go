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
	"sync/atomic"

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
//   - no goroutine hand-off between reading a request and serving it (mcp-go
//     has two: a reader goroutine per line, a worker queue): the transport
//     is on the latency path of every check_tls.
//
// Requests run concurrently, at most stdioMaxConcurrent at once (the
// reader waits for a slot, which pushes back on the client); notifications
// are handled in order on the reader. Every write is one whole line.
type stdioTransport struct {
	srv     *server.MCPServer
	refuse  func(ctx context.Context, session, method string, params json.RawMessage) *mcp.JSONRPCErrorDetails
	logger  *slog.Logger
	maxLine int

	sess     *stdioSession
	initSeen atomic.Bool // an initialize request was read
	out      io.Writer
	outMu    sync.Mutex
	slots    chan struct{}
	flights  *flights

	readDone chan error // the end of stdin, from the reader that met it

	mu     sync.Mutex // guards closed and wg.Add against wg.Wait
	closed bool
	wg     sync.WaitGroup // requests being served
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
	t.readDone = make(chan error, 1)
	go t.read(ctx, bufio.NewReaderSize(stdin, stdioReadBuffer))
	var err error
	select {
	case err = <-t.readDone:
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

// read reads messages in order and serves the notifications itself. At a
// request it passes the reading on to a new goroutine and serves the
// request: the request goes on on the thread that woke up for it, with no
// hand-off on the latency path of a tool call, while the next read waits
// on another thread. The reader that meets the end of stdin reports it on
// t.readDone.
func (t *stdioTransport) read(ctx context.Context, rd *bufio.Reader) {
	for {
		line, done, err := t.next(rd)
		if done {
			t.readDone <- err
			return
		}
		env, ok := t.admit(ctx, line)
		if !ok {
			continue
		}
		if !t.begin(ctx) {
			return // shutting down
		}
		go t.read(ctx, rd)
		t.serveRequest(ctx, env, line)
		return
	}
}

// next is the next non-empty line; done at the end of stdin (err nil) or
// on a read error. An over-long line is answered and skipped.
func (t *stdioTransport) next(rd *bufio.Reader) (line []byte, done bool, err error) {
	for {
		line, err := readLine(rd, t.maxLine)
		switch {
		case errors.Is(err, errLineTooLong):
			t.writeError(nil, mcp.PARSE_ERROR, fmt.Sprintf("message longer than %d bytes; not read", t.maxLine))
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return nil, true, fmt.Errorf("read stdin: %w", err)
		case len(bytes.TrimSpace(line)) == 0:
			if err != nil {
				return nil, true, nil
			}
			continue
		}
		return line, false, nil // a last line without newline: EOF comes next
	}
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

// admit parses a message and answers what needs no handler: it serves a
// notification (in order), refuses a malformed message, a request before
// initialize and one naming an unknown resource, and returns ok for a
// request to serve.
func (t *stdioTransport) admit(ctx context.Context, line []byte) (env envelope, ok bool) {
	if err := json.Unmarshal(line, &env); err != nil {
		t.writeError(nil, mcp.PARSE_ERROR, "Parse error: "+err.Error())
		return env, false
	}
	if !env.isRequest() {
		if env.Method == string(mcp.MethodNotificationCancelled) {
			t.flights.cancel(stdioSessionID, env.Params)
		}
		t.handle(ctx, nil, line) // notifications, and responses to us
		return env, false
	}
	// A client may send its next requests without waiting for the answer
	// to initialize: an initialize read is enough.
	if env.Method == string(mcp.MethodInitialize) {
		t.initSeen.Store(true)
	}
	if !t.initSeen.Load() && !t.sess.Initialized() && !preInitialize(&env) {
		t.writeError(env.ID, mcp.INVALID_REQUEST, fmt.Sprintf("%s before initialize: send initialize first", probe.Clip(env.Method, 64)))
		return env, false
	}
	if t.refuse != nil {
		if e := t.refuse(ctx, stdioSessionID, env.Method, env.Params); e != nil {
			t.write(mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: requestID(env.ID), Error: *e})
			return env, false
		}
	}
	return env, true
}

// begin takes a request slot (waiting while maxConcurrent requests run)
// and counts the request for serve's shutdown; false once shutting down.
func (t *stdioTransport) begin(ctx context.Context) bool {
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		<-t.slots
		return false
	}
	t.wg.Add(1)
	return true
}

// serveRequest serves a request admitted and begun; its response is
// dropped when the client cancelled it meanwhile.
func (t *stdioTransport) serveRequest(ctx context.Context, env envelope, line []byte) {
	defer t.wg.Done()
	defer func() { <-t.slots }()
	f, done := t.flights.start(stdioSessionID, env.ID)
	defer done()
	resp := t.handle(ctx, env.ID, line)
	f.mu.Lock()
	cancelled := f.cancelled
	f.mu.Unlock()
	if resp != nil && !cancelled {
		t.write(resp)
	}
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
