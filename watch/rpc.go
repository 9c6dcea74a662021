package watch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/rpc"
	"os"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch/internal/wire"
)

// --- event ring (owner) ---

// eventRing keeps the owner's recent events so followers can long-poll them
// by sequence number. Its epoch is new with every owner.
type eventRing struct {
	mu     sync.Mutex
	epoch  string
	cap    int
	base   uint64 // sequence number of buf[0]
	buf    []Event
	notify chan struct{} // closed and replaced on every append
	closed bool
}

func newEventRing(n int) *eventRing {
	var b [8]byte
	rand.Read(b[:])
	return &eventRing{epoch: hex.EncodeToString(b[:]), cap: n, notify: make(chan struct{})}
}

func (r *eventRing) append(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return // a late event of a call that raced the shutdown
	}
	r.buf = append(r.buf, ev)
	if len(r.buf) > r.cap {
		drop := len(r.buf) - r.cap
		r.buf = append(r.buf[:0:0], r.buf[drop:]...)
		r.base += uint64(drop)
	}
	close(r.notify)
	r.notify = make(chan struct{})
}

func (r *eventRing) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.notify)
	}
}

func (r *eventRing) head() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.base + uint64(len(r.buf))
}

// since returns the events from sequence next on (those already dropped are
// skipped), the following sequence number, and a channel closed on the next
// append.
func (r *eventRing) since(next uint64) ([]Event, uint64, <-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if next < r.base {
		next = r.base
	}
	end := r.base + uint64(len(r.buf))
	if next > end {
		next = end // a sequence from nowhere: start at the head
	}
	evs := append([]Event(nil), r.buf[next-r.base:]...)
	return evs, end, r.notify, r.closed
}

// --- server (owner) ---

// longPoll bounds one Events call; the follower simply calls again.
const longPoll = 15 * time.Second

type rpcServer struct {
	ln     net.Listener
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// svc is the net/rpc receiver; only its RPC methods are exported.
type svc struct {
	e    *engine
	ring *eventRing
	ctx  context.Context
}

func listen(path string, e *engine, ring *eventRing, log *slog.Logger) (*rpcServer, error) {
	// We hold the database lock, so any socket file here is a dead owner's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	s := &rpcServer{ln: ln, log: log, conns: make(map[net.Conn]struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	rs := rpc.NewServer()
	if err := rs.RegisterName(wire.Service, &svc{e: e, ring: ring, ctx: s.ctx}); err != nil {
		ln.Close()
		return nil, fmt.Errorf("register rpc service: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.conns == nil {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				rs.ServeConn(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s, nil
}

// close stops accepting (the listener unlinks the socket), drops every
// follower connection so they start the takeover at once, and ends calls in
// progress.
func (s *rpcServer) close() {
	s.cancel()
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *svc) callCtx(deadline int64) (context.Context, context.CancelFunc) {
	if deadline > 0 {
		return context.WithDeadline(s.ctx, time.Unix(0, deadline))
	}
	return context.WithTimeout(s.ctx, 2*time.Minute)
}

// reply fills r. An error while the owner is shutting down is reported as a
// handover, so the follower retries with the next owner instead of showing
// the owner's own cancellation to its user.
func (s *svc) reply(r *wire.Reply, v any, err error) error {
	if err != nil && s.ctx.Err() != nil {
		err = errEngineClosed
	}
	if err != nil {
		r.Err = toWire(err)
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		r.Err = &wire.Err{Kind: "other", Msg: "encode reply: " + err.Error()}
		return nil
	}
	r.Data = data
	return nil
}

func (s *svc) Head(_ wire.Empty, r *wire.HeadReply) error {
	r.Epoch, r.Next = s.ring.epoch, s.ring.head()
	return nil
}

func (s *svc) Events(a wire.EventsArgs, r *wire.EventsReply) error {
	r.Epoch = s.ring.epoch
	if a.Epoch != s.ring.epoch {
		return nil
	}
	timer := time.NewTimer(longPoll)
	defer timer.Stop()
	next := a.Next
	for {
		evs, end, ch, closed := s.ring.since(next)
		if len(evs) > 0 || closed {
			r.Next = end
			for _, ev := range evs {
				we := wire.Event{Kind: ev.Kind, Level: ev.Level, Message: ev.Message}
				if ev.Kind != eventListChanged {
					we.Watch, _ = json.Marshal(ev.Watch)
				}
				r.Events = append(r.Events, we)
			}
			if closed {
				return errors.New("owner shutting down")
			}
			return nil
		}
		next = end
		select {
		case <-ch:
		case <-timer.C:
			r.Next = next
			return nil
		case <-s.ctx.Done():
			return errors.New("owner shutting down")
		}
	}
}

func (s *svc) Add(a wire.AddArgs, r *wire.Reply) error {
	var spec Spec
	if err := json.Unmarshal(a.Spec, &spec); err != nil {
		return s.reply(r, nil, fmt.Errorf("decode spec: %w", err))
	}
	ctx, cancel := s.callCtx(a.Deadline)
	defer cancel()
	w, err := s.e.add(ctx, spec)
	return s.reply(r, w, handover(err))
}

func (s *svc) Remove(a wire.RemoveArgs, r *wire.Reply) error {
	ctx, cancel := s.callCtx(a.Deadline)
	defer cancel()
	w, err := s.e.remove(ctx, a.ID, a.Target)
	return s.reply(r, w, handover(err))
}

func (s *svc) Get(a wire.IDArgs, r *wire.Reply) error {
	w, err := s.e.get(a.ID)
	return s.reply(r, w, handover(err))
}

func (s *svc) List(_ wire.Empty, r *wire.Reply) error {
	ws, err := s.e.list()
	return s.reply(r, ws, handover(err))
}

func (s *svc) Expiring(a wire.DaysArgs, r *wire.Reply) error {
	ws, err := s.e.expiring(a.Days)
	return s.reply(r, ws, handover(err))
}

func (s *svc) History(a wire.HistoryArgs, r *wire.Reply) error {
	rs, err := s.e.history(a.ID, a.Limit)
	return s.reply(r, rs, handover(err))
}

func toWire(err error) *wire.Err {
	var fe *probe.FieldError
	var te errTransport
	switch {
	case errors.As(err, &fe):
		return &wire.Err{Kind: "field", Field: fe.Field, Reason: fe.Reason}
	case errors.Is(err, ErrNotFound):
		return &wire.Err{Kind: "not_found", Msg: err.Error()}
	case errors.As(err, &te):
		return &wire.Err{Kind: "handover", Msg: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &wire.Err{Kind: "deadline", Msg: err.Error()}
	case errors.Is(err, context.Canceled):
		return &wire.Err{Kind: "canceled", Msg: err.Error()}
	}
	return &wire.Err{Kind: "other", Msg: err.Error()}
}

// remoteErr is an error from the owner, keeping its message and its kind
// for errors.Is.
type remoteErr struct {
	msg string
	is  error
}

func (e *remoteErr) Error() string { return e.msg }
func (e *remoteErr) Unwrap() error { return e.is }

func fromWire(w *wire.Err) error {
	switch w.Kind {
	case "field":
		return &probe.FieldError{Field: w.Field, Reason: w.Reason}
	case "not_found":
		return &remoteErr{w.Msg, ErrNotFound}
	case "handover":
		return errTransport{errors.New(w.Msg)}
	case "deadline":
		return &remoteErr{w.Msg, context.DeadlineExceeded}
	case "canceled":
		return &remoteErr{w.Msg, context.Canceled}
	}
	return errors.New("owner: " + w.Msg)
}

// --- client (follower) ---

type rpcClient struct {
	c    *rpc.Client
	once sync.Once
}

func dial(path string) (*rpcClient, error) {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	return &rpcClient{c: rpc.NewClient(conn)}, nil
}

func (c *rpcClient) close() { c.once.Do(func() { c.c.Close() }) }

// do runs one call; a failed call (connection lost, owner stopping) is an
// errTransport, which the Manager retries after the handover.
func (c *rpcClient) do(ctx context.Context, method string, args, rep any) error {
	call := c.c.Go(wire.Service+"."+method, args, rep, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		if call.Error != nil {
			return errTransport{call.Error}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func deadlineOf(ctx context.Context) int64 {
	if d, ok := ctx.Deadline(); ok {
		return d.UnixNano()
	}
	return 0
}

func (c *rpcClient) head(ctx context.Context) (string, uint64, error) {
	var r wire.HeadReply
	if err := c.do(ctx, "Head", wire.Empty{}, &r); err != nil {
		return "", 0, err
	}
	return r.Epoch, r.Next, nil
}

func (c *rpcClient) events(ctx context.Context, epoch string, next uint64) ([]Event, string, uint64, error) {
	var r wire.EventsReply
	if err := c.do(ctx, "Events", wire.EventsArgs{Epoch: epoch, Next: next}, &r); err != nil {
		return nil, "", 0, err
	}
	evs := make([]Event, 0, len(r.Events))
	for _, we := range r.Events {
		ev := Event{Kind: we.Kind, Level: we.Level, Message: we.Message}
		if len(we.Watch) > 0 {
			if err := json.Unmarshal(we.Watch, &ev.Watch); err != nil {
				return nil, "", 0, fmt.Errorf("decode event: %w", err)
			}
		}
		evs = append(evs, ev)
	}
	return evs, r.Epoch, r.Next, nil
}

// call does one Service call and decodes its payload into out.
func (c *rpcClient) call(ctx context.Context, method string, args any, out any) error {
	var r wire.Reply
	if err := c.do(ctx, method, args, &r); err != nil {
		return err
	}
	if r.Err != nil {
		return fromWire(r.Err)
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		return fmt.Errorf("watch: decode %s reply: %w", method, err)
	}
	return nil
}

func (c *rpcClient) add(ctx context.Context, s Spec) (Watch, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return Watch{}, fmt.Errorf("watch: encode spec: %w", err)
	}
	var w Watch
	err = c.call(ctx, "Add", wire.AddArgs{Spec: raw, Deadline: deadlineOf(ctx)}, &w)
	return w, err
}

func (c *rpcClient) remove(ctx context.Context, id, target string) (Watch, error) {
	var w Watch
	err := c.call(ctx, "Remove", wire.RemoveArgs{ID: id, Target: target, Deadline: deadlineOf(ctx)}, &w)
	return w, err
}

func (c *rpcClient) get(ctx context.Context, id string) (Watch, error) {
	var w Watch
	err := c.call(ctx, "Get", wire.IDArgs{ID: id}, &w)
	return w, err
}

func (c *rpcClient) list(ctx context.Context) ([]Watch, error) {
	var ws []Watch
	err := c.call(ctx, "List", wire.Empty{}, &ws)
	return ws, err
}

func (c *rpcClient) expiring(ctx context.Context, days int) ([]Watch, error) {
	var ws []Watch
	err := c.call(ctx, "Expiring", wire.DaysArgs{Days: days}, &ws)
	return ws, err
}

func (c *rpcClient) history(ctx context.Context, id string, limit int) ([]probe.Report, error) {
	var rs []probe.Report
	err := c.call(ctx, "History", wire.HistoryArgs{ID: id, Limit: limit}, &rs)
	return rs, err
}
