package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"

	"github.com/tlswatch/tlswatch/probe"
)

// DefaultPrefix is where tlswatch keeps its keys (--etcd-prefix).
const DefaultPrefix = "/tlswatch/"

// Keyspace names every key tlswatch keeps in etcd, all under one prefix so
// that several tlswatch clusters (or tests) share an etcd without meeting.
// The layout and what each key costs are in the package documentation.
type Keyspace struct{ p string }

// NewKeyspace checks a prefix (--etcd-prefix): it starts and ends with "/"
// and has no control characters. Empty means DefaultPrefix.
func NewKeyspace(prefix string) (Keyspace, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	switch {
	case !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || prefix == "/":
		return Keyspace{}, &probe.FieldError{Field: "--etcd-prefix", Reason: fmt.Sprintf("%q must start and end with / and name something, like %s", prefix, DefaultPrefix)}
	case len(prefix) > 128:
		return Keyspace{}, &probe.FieldError{Field: "--etcd-prefix", Reason: "longer than 128 bytes"}
	case strings.IndexFunc(prefix, unicode.IsControl) >= 0:
		return Keyspace{}, &probe.FieldError{Field: "--etcd-prefix", Reason: fmt.Sprintf("%q has control characters", prefix)}
	}
	return Keyspace{p: prefix}, nil
}

// Prefix is the keyspace's root.
func (k Keyspace) Prefix() string { return k.p }

// Meta holds the cluster's fixed parameters (schema, shard count).
func (k Keyspace) Meta() string { return k.p + "meta" }

// Members is the directory of live nodes; Member is one node's leased key.
func (k Keyspace) Members() string           { return k.p + "members/" }
func (k Keyspace) Member(node string) string { return k.Members() + node }

// Shards is the directory of shard claims; Shard is one claim, leased by the
// node that holds it. Its mod revision is the fence of every write for the
// watches of that shard.
func (k Keyspace) Shards() string         { return k.p + "shards/" }
func (k Keyspace) Shard(s int) string     { return fmt.Sprintf("%s%04d", k.Shards(), s) }
func (k Keyspace) Watches() string        { return k.p + "watches/" }
func (k Keyspace) Watch(id string) string { return k.Watches() + id }

// Target maps a target's identity to its watch id, so that adding the same
// target on two nodes at once yields one watch (a create-if-absent Txn).
// Identities are hashed: they hold host names of any length.
func (k Keyspace) Target(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return k.p + "targets/" + hex.EncodeToString(sum[:16])
}

// States is the directory of per-watch state; State is one watch's: the
// state machine, the newest samples and a reference to its latest Report.
func (k Keyspace) States() string         { return k.p + "state/" }
func (k Keyspace) State(id string) string { return k.States() + id }

// Alert is the alert state of one certificate (by fingerprint) of a watch.
func (k Keyspace) Alerts(id string) string             { return k.p + "alerts/" + id + "/" }
func (k Keyspace) Alert(id, fingerprint string) string { return k.Alerts(id) + fingerprint }

// Report is a full Report of a watch, stored when it differs from the one
// before; hash names its content, so an unchanged Report is never rewritten.
func (k Keyspace) Reports(id string) string      { return k.p + "reports/" + id + "/" }
func (k Keyspace) Report(id, hash string) string { return k.Reports(id) + hash }

// History holds sealed segments of compact samples of a watch, numbered
// in order, so that a range read walks them oldest first.
func (k Keyspace) History(id string) string { return k.p + "history/" + id + "/" }
func (k Keyspace) Segment(id string, n uint64) string {
	return fmt.Sprintf("%s%016x", k.History(id), n)
}

// Outbox holds alert deliveries not yet acknowledged, per shard: the node
// holding the shard delivers them, and a node taking the shard over
// delivers what its predecessor left. Entries sit under e/, the
// "channel was told" marks under m/ (named by a hash of the mark).
func (k Keyspace) Outbox(shard int) string { return fmt.Sprintf("%soutbox/%04d/", k.p, shard) }
func (k Keyspace) OutboxEntry(shard int, id uint64) string {
	return fmt.Sprintf("%se/%016x", k.Outbox(shard), id)
}
func (k Keyspace) OutboxMark(shard int, mark string) string {
	sum := sha256.Sum256([]byte(mark))
	return k.Outbox(shard) + "m/" + hex.EncodeToString(sum[:16])
}

// Feed is the durable alert feed: entries numbered by one sequence for the
// whole cluster (FeedSeq holds the last number given), so a cursor is a
// number and a reader can tell how many entries it missed.
func (k Keyspace) Feed() string                { return k.p + "feed/" }
func (k Keyspace) FeedEntry(seq uint64) string { return fmt.Sprintf("%s%020d", k.Feed(), seq) }
func (k Keyspace) FeedSeq() string             { return k.p + "feedseq" }

// Writer is a node's stamp key: each batched Txn of the node stamps it, so
// that a retried Txn can tell that its earlier attempt landed.
func (k Keyspace) Writer(node string) string { return k.p + "writers/" + node }

// CheckNode validates a node name (--node): it becomes a key segment and
// the probed_by of records, so it is short, printable and has no "/".
func CheckNode(name string) error {
	switch {
	case name == "":
		return &probe.FieldError{Field: "--node", Reason: "empty"}
	case len(name) > 64:
		return &probe.FieldError{Field: "--node", Reason: fmt.Sprintf("%q longer than 64 bytes", name)}
	case strings.ContainsAny(name, "/ "):
		return &probe.FieldError{Field: "--node", Reason: fmt.Sprintf("%q has a slash or a space", name)}
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return &probe.FieldError{Field: "--node", Reason: fmt.Sprintf("%q has unprintable characters", name)}
	}
	return nil
}
