package watch

import (
	"log/slog"
	"sync"
	"time"
)

// Hub fans Changes out to Notifiers. Each Notifier gets its own buffered
// queue and goroutine, so a slow one never blocks the publisher or the
// others; one that falls SubscriberBuffer changes behind loses changes
// (logged) rather than stall the watcher. The zero value is not usable:
// call NewHub.
type Hub struct {
	log *slog.Logger

	mu     sync.Mutex
	subs   map[uint64]*subscriber
	nextID uint64
	closed bool
}

// SubscriberBuffer bounds the changes queued per Notifier.
const SubscriberBuffer = 1024

type subscriber struct {
	n    Notifier
	ch   chan Change
	quit chan struct{}
	once sync.Once

	dropped    int       // changes lost since the last warning (under Hub.mu)
	lastWarned time.Time // (under Hub.mu)
}

// NewHub returns a Hub logging to log.
func NewHub(log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{log: log, subs: make(map[uint64]*subscriber)}
}

func (s *subscriber) stop() { s.once.Do(func() { close(s.quit) }) }

func (s *subscriber) loop(log *slog.Logger) {
	for {
		select {
		case <-s.quit:
			return
		case c := <-s.ch:
			func() {
				defer func() {
					if r := recover(); r != nil {
						log.Error("watch: notifier panicked", "panic", r)
					}
				}()
				s.n.Changed(c)
			}()
		}
	}
}

// Subscribe registers n; the returned func removes it.
func (h *Hub) Subscribe(n Notifier) (cancel func()) {
	s := &subscriber{n: n, ch: make(chan Change, SubscriberBuffer), quit: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return func() {}
	}
	h.nextID++
	id := h.nextID
	h.subs[id] = s
	h.mu.Unlock()
	go s.loop(h.log)
	return func() {
		h.mu.Lock()
		delete(h.subs, id)
		h.mu.Unlock()
		s.stop()
	}
}

// Publish queues c for every Notifier, without blocking.
func (h *Hub) Publish(c Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		select {
		case s.ch <- c:
		default:
			// A burst (a network outage takes thousands of watches down at
			// once) must not turn into one log line per lost change.
			s.dropped++
			if time.Since(s.lastWarned) > 10*time.Second {
				h.log.Warn("watch: notifier queue full; dropping changes", "dropped", s.dropped, "last_id", c.Watch.ID)
				s.dropped, s.lastWarned = 0, time.Now()
			}
		}
	}
}

// Close stops every Notifier's goroutine; later Subscribes are no-ops.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for id, s := range h.subs {
		s.stop()
		delete(h.subs, id)
	}
}
