package etcdlab

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy forwards TCP from a loopback port to an etcd server. Partition cuts
// every connection through it and black-holes new ones (accepted, never
// answered), as a network partition looks to a client; Heal lets traffic
// through again. The server itself keeps running for everyone else.
type Proxy struct {
	Endpoint string // http://127.0.0.1:PORT, to give to a client
	target   string
	ln       net.Listener

	mu      sync.Mutex
	cut     bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	stopped bool
}

// NewProxy listens on a free loopback port and forwards to endpoint
// (http://host:port). It closes at t's cleanup.
func NewProxy(t testing.TB, endpoint string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdlab: proxy listen: %v", err)
	}
	p := &Proxy{
		Endpoint: "http://" + ln.Addr().String(),
		target:   strings.TrimPrefix(endpoint, "http://"),
		ln:       ln,
		conns:    make(map[net.Conn]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			continue // held open, never answered, until Heal or Close
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) forward(c net.Conn) {
	defer p.wg.Done()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	if !p.track(up) {
		up.Close()
		p.drop(c)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		p.drop(dst)
		p.drop(src)
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// dropAll closes every connection through the proxy.
func (p *Proxy) dropAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = make(map[net.Conn]struct{})
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Partition cuts the client off: open connections die and new ones hang.
func (p *Proxy) Partition() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
	p.dropAll()
}

// Heal ends the partition: the held connections are closed so the client
// reconnects, and new connections are forwarded again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
	p.dropAll()
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.ln.Close()
	p.dropAll()
	p.wg.Wait()
}
