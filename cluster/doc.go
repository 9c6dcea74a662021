// Package cluster lets several tlswatch nodes share watches through etcd,
// so that each watch is probed by exactly one live node and a dead node's
// watches move to the others within a lease TTL. It holds the primitives;
// package watch decides what to write.
//
//   - Membership: each node keeps a key under a lease (TTL 10 s by default)
//     and renews it every third of the TTL.
//   - Shards: watches fall into a fixed number of virtual shards (256) by a
//     hash of their id. Each shard belongs to the live member with the
//     highest rendezvous score for it; that member claims it with a key
//     under its lease. When a member leaves, only its shards move.
//   - A node trusts its lease only until the last renewal it *sent* plus
//     the TTL, less a tenth: etcd counts from when it *received* it, so the
//     node gives a shard up (the claim's context is cancelled, probing
//     stops) before etcd can hand it to anyone else.
//   - Fencing: every write for a watch is an etcd Txn comparing the claim
//     key's mod revision with the one the node claimed it at. A node that
//     was paused or partitioned past its lease finds the key deleted or
//     claimed again, and its write is refused, so it can never record a
//     stage or queue an alert twice.
//   - Batcher groups a node's routine writes (one per probe) into a Txn a
//     second; urgent ones (state changes that alert) flush at once. Retries
//     after an unknown outcome are applied at most once (a stamp key).
//   - Mirror keeps a local copy of a prefix by an etcd watch: every node
//     answers reads from it, and keeps answering while etcd is unreachable,
//     marked stale since the last time it was known current.
//
// The keyspace, under --etcd-prefix (Keyspace names every key):
//
//	meta                          {"schema":1,"shards":256}
//	members/<node>                leased; the live nodes
//	shards/<NNNN>                 leased; the node holding the shard (the fence)
//	writers/<node>                the node's last batched-Txn stamp
//	watches/<id>                  the watch as created: self-contained probe configuration
//	targets/<hash of identity>    -> id; adding one target twice yields one watch
//	state/<id>                    state machine, newest samples, latest Report's hash, probed_by
//	reports/<id>/<hash>           a full Report, written only when it differs from the last
//	history/<id>/<first sample>   sealed segments of compact samples
//	alerts/<id>/<fingerprint>     alert state per certificate (stages fired)
//	outbox/<NNNN>/<event>         deliveries not yet acknowledged, delivered by the shard's holder
//	feed/<event>                  the alert feed; an entry's cursor is its create revision
//
// Keys an event writes (outbox, feed) are named from the event itself, never
// from a counter, so that a write retried after an unknown outcome cannot
// add a second copy.
package cluster
