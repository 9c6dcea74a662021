package owner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/rpc"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/owner/internal/wire"
)

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
	watches watch.Service
	ring    *ring
	ctx     context.Context
}

func listen(path string, watches watch.Service, r *ring, log *slog.Logger) (*rpcServer, error) {
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
	if err := rs.RegisterName(wire.Service, &svc{watches: watches, ring: r, ctx: s.ctx}); err != nil {
		ln.Close()
		return nil, fmt.Errorf("register rpc service: %w", err)
	}
	s.wg.Add(1)
	go s.accept(rs)
	return s, nil
}

func (s *rpcServer) accept(rs *rpc.Server) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if err := sameUser(c); err != nil {
			s.log.Warn("watch: refused a connection to the owner's socket", "reason", err)
			c.Close()
			continue
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

// Call runs one watch.Service method for a follower. An error while the
// owner is shutting down is reported as a handover, so the follower
// retries with the next owner instead of showing the owner's own
// cancellation to its user.
func (s *svc) Call(req wire.Request, resp *wire.Response) error {
	deadline := time.Now().Add(2 * time.Minute)
	if req.Deadline > 0 {
		deadline = time.Unix(0, req.Deadline)
	}
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()
	res, err := serveCall(ctx, s.watches, req)
	err = handover(err)
	if err != nil && s.ctx.Err() != nil {
		err = errOwnerClosing
	}
	if err != nil {
		resp.Err = toWire(err)
		return nil
	}
	resp.Result = res
	return nil
}

// Head returns where the change stream stands.
func (s *svc) Head(_ wire.Empty, r *wire.HeadReply) error {
	r.Epoch, r.Next = s.ring.epoch, s.ring.head()
	return nil
}

// Events long-polls the change stream.
func (s *svc) Events(a wire.EventsArgs, r *wire.EventsReply) error {
	r.Epoch = s.ring.epoch
	if a.Epoch != s.ring.epoch {
		return nil
	}
	timer := time.NewTimer(longPoll)
	defer timer.Stop()
	next := a.Next
	for {
		cs, end, ch, closed := s.ring.since(next)
		if len(cs) > 0 || closed {
			r.Next = end
			for _, c := range cs {
				raw, err := json.Marshal(c)
				if err != nil {
					return fmt.Errorf("encode change: %w", err)
				}
				r.Changes = append(r.Changes, raw)
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

// --- client (follower) ---

type rpcClient struct {
	c    *rpc.Client
	once sync.Once
}

// dial connects to the owner at path and checks that it is one (see
// peer.go): a *squatError when what answers there is not.
func dial(path string) (*rpcClient, error) {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	if err := sameUser(conn); err != nil {
		conn.Close()
		return nil, &squatError{path: path, reason: err.Error()}
	}
	cli := &rpcClient{c: rpc.NewClient(conn)}
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	_, _, err = cli.head(ctx)
	if err == nil {
		return cli, nil
	}
	cli.close()
	var te errTransport
	switch {
	case ctx.Err() != nil:
		return nil, &squatError{path: path, reason: fmt.Sprintf("no answer to the handshake within %s", handshakeTimeout)}
	case errors.As(err, &te) && closedConn(te.err):
		return nil, err // an owner going away: not a squatter
	}
	return nil, &squatError{path: path, reason: "it does not speak the owner's protocol: " + err.Error()}
}

// closedConn reports whether err is the connection ending (an owner
// shutting down closes it), not an answer.
func closedConn(err error) bool {
	return errors.Is(err, rpc.ErrShutdown) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
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

// call runs a watch.Service method on the owner.
func (c *rpcClient) call(ctx context.Context, method string, args []any, out any) error {
	raw, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("watch: encode arguments of %s: %w", method, err)
	}
	req := wire.Request{Method: method, Args: raw}
	if d, ok := ctx.Deadline(); ok {
		req.Deadline = d.UnixNano()
	}
	var resp wire.Response
	if err := c.do(ctx, "Call", req, &resp); err != nil {
		return err
	}
	if resp.Err != nil {
		return fromWire(resp.Err)
	}
	if len(resp.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp.Result, out); err != nil {
		return fmt.Errorf("watch: decode %s reply: %w", method, err)
	}
	return nil
}

func (c *rpcClient) head(ctx context.Context) (string, uint64, error) {
	var r wire.HeadReply
	if err := c.do(ctx, "Head", wire.Empty{}, &r); err != nil {
		return "", 0, err
	}
	return r.Epoch, r.Next, nil
}

func (c *rpcClient) events(ctx context.Context, epoch string, next uint64) ([]watch.Change, string, uint64, error) {
	var r wire.EventsReply
	if err := c.do(ctx, "Events", wire.EventsArgs{Epoch: epoch, Next: next}, &r); err != nil {
		return nil, "", 0, err
	}
	cs := make([]watch.Change, len(r.Changes))
	for i, raw := range r.Changes {
		if err := json.Unmarshal(raw, &cs[i]); err != nil {
			return nil, "", 0, fmt.Errorf("decode change: %w", err)
		}
	}
	return cs, r.Epoch, r.Next, nil
}
