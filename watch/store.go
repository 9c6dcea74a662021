package watch

import (
	"context"
	"time"

	"github.com/tlswatch/tlswatch/store"
)

// Store is what the engine persists through. *store.DB (bbolt) implements
// it; a store shared by cluster nodes can too. Methods MUST be safe for
// concurrent use, return values that do not alias the store's memory, and
// wrap store.ErrNotFound for an unknown watch. Apply and Delete MUST be
// atomic (each update with its history, alert state, feed entries and what
// its InTx hook enqueues, or nothing) and durable before they return.
type Store interface {
	// ForEach calls fn with every record that decodes (at start) and
	// returns those that do not, which it has set aside: one bad record
	// must not keep the others from loading.
	ForEach(fn func(store.Record) error) ([]store.Quarantined, error)
	// Apply writes a batch of updates in one transaction and reports, per
	// update, whether it was applied (an update of a missing watch without
	// Create is dropped).
	Apply(ups []store.Update) ([]bool, error)
	// Delete removes a watch with everything it owns and appends feed.
	Delete(id string, feed ...store.FeedEntry) (store.Record, error)
	Get(id string) (store.View, error)
	// ListPage returns up to limit watches after the id after, in id
	// order, leaving out (and naming) records that do not decode.
	ListPage(after string, limit int) (store.Page, error)
	// ExpiringIDs lists the watches whose leaf expires before until, then
	// those that are down.
	ExpiringIDs(until time.Time) ([]string, error)
	// Query answers a history query: samples or aggregates of a range,
	// with the Reports stored at its changes.
	Query(id string, q store.HistoryQuery) (store.HistoryPage, error)
	// RecentOf is each watch's uptime and latency over the last day and
	// month at now (ids without history are left out).
	RecentOf(ids []string, now time.Time) (map[string]store.Recent, error)
	Alert(id, fingerprint string) (store.Alert, bool, error)
	// Feed reads the alert feed after a sequence number.
	Feed(after uint64, limit int) (store.FeedPage, error)
}

var _ Store = (*store.DB)(nil)

// Ownership says which watches this engine probes on schedule: a cluster
// node owns a shard of them, and shards come and go. The scheduler asks at
// every fire, so a change takes effect at the next one; a watch this engine
// did not own is re-read from the Store before its first probe here. Owns
// MUST be cheap and safe for concurrent use. A nil Ownership owns every
// watch (one process owns the bbolt file).
type Ownership interface {
	Owns(id string) bool
}

// RemoteChanges is implemented by a Store that several nodes write: it
// delivers the Changes other nodes committed, once its reads show them, so
// that this engine's subscribers hear about them too and its memory of
// those watches follows. Only the Change's Watch.ID need be set: the
// engine reads the watch back (gone: removed). A Change without events
// (another node's routine probe result) only updates memory. The engine
// subscribes when it starts and cancels when it closes. *store.DB has no
// other writer and does not implement it.
type RemoteChanges interface {
	SubscribeRemote(fn func(Change)) (cancel func())
}

// memoryReleaser is implemented by stores that map their file (bbolt):
// the engine asks them to drop mappings after large scans.
type memoryReleaser interface {
	ReleaseMemory() error
}

// CommitHook is called inside the write transaction that commits a Change
// (a stage marked as fired, a watch marked down), once per Change, in the
// order the changes were decided. What it enqueues in the outbox through tx
// is durable exactly when the change is. It MUST be quick and should return
// an error only when the transaction is doomed anyway: an error rolls back
// the whole group commit, probe results included.
type CommitHook func(tx store.OutboxTx, c Change) error

// Outbox is the delivery side of the alert queue that lives beside the
// watches (*store.Outbox for bbolt).
type Outbox interface {
	Due(now time.Time, limit int) ([]store.OutboxEntry, error)
	NextDue() (next time.Time, ok bool, err error)
	MarkDelivered(id uint64) error
	Drop(id uint64) error
	Reschedule(id uint64, next time.Time, attempts int, lastErr string) error
}

var _ Outbox = (*store.Outbox)(nil)

// Alerter is alert delivery as the owner of the watches runs it: work that
// must happen exactly once across processes. Package alert implements it.
type Alerter interface {
	// Attach is called each time this process becomes the owner, before any
	// probe result commits; ob is the queue in the owned database. The
	// returned CommitHook (nil for none) enqueues alerts inside the commit
	// of their cause.
	Attach(ob Outbox) CommitHook
	// Deliver delivers queued alerts (including what a previous owner left)
	// until ctx ends, which happens before the database is closed.
	Deliver(ctx context.Context)
}

// Staleness is implemented by a Store that answers from a local copy of
// state that others write (a cluster node's mirror of etcd): while the copy
// may be behind, StaleSince reports since when (the last time it was known
// current), and the engine marks what it shows with stale_since.
type Staleness interface {
	StaleSince() (since time.Time, stale bool)
}

// OwnershipChanges is implemented by an Ownership whose watches come and
// go while the engine runs (shards taken over from a node that died): the
// engine registers to hear which watches it gained, so that it probes the
// overdue ones soon, spread over the startup window, rather than at their
// next regular time.
type OwnershipChanges interface {
	OnGained(fn func(gained func(id string) bool))
}

// OutboxReady is implemented by an Outbox whose deliverable entries can
// change outside this process's commits (another node queued some in a
// shard this node holds, or it took shards over): the delivery loop also
// wakes when Ready is signalled.
type OutboxReady interface {
	Ready() <-chan struct{}
}
