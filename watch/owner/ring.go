package owner

import (
	"crypto/rand"
	"encoding/hex"
	"sync"

	"github.com/tlswatch/tlswatch/watch"
)

// ring keeps the owner's recent Changes so followers can long-poll them by
// sequence number. Its epoch is new with every owner.
type ring struct {
	mu     sync.Mutex
	epoch  string
	cap    int
	base   uint64 // sequence number of buf[0]
	buf    []watch.Change
	notify chan struct{} // closed and replaced on every append
	closed bool
}

func newRing(n int) *ring {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return &ring{epoch: hex.EncodeToString(b[:]), cap: n, notify: make(chan struct{})}
}

func (r *ring) append(c watch.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return // a late change of a call that raced the shutdown
	}
	r.buf = append(r.buf, c)
	if len(r.buf) > r.cap {
		drop := len(r.buf) - r.cap
		r.buf = append(r.buf[:0:0], r.buf[drop:]...)
		r.base += uint64(drop)
	}
	close(r.notify)
	r.notify = make(chan struct{})
}

func (r *ring) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.notify)
	}
}

func (r *ring) head() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.base + uint64(len(r.buf))
}

// since returns the changes from sequence next on (those already dropped
// are skipped), the following sequence number, and a channel closed on the
// next append.
func (r *ring) since(next uint64) ([]watch.Change, uint64, <-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if next < r.base {
		next = r.base
	}
	end := r.base + uint64(len(r.buf))
	if next > end {
		next = end // a sequence from nowhere: start at the head
	}
	cs := append([]watch.Change(nil), r.buf[next-r.base:]...)
	return cs, end, r.notify, r.closed
}
