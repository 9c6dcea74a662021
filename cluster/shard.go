package cluster

import (
	"encoding/binary"
	"hash/fnv"
)

// DefaultShards is the number of virtual shards of a new cluster. It is
// fixed for the life of a keyspace (stored in its meta key): a watch's shard
// must not move when nodes come and go, only the shard's owner does. 256
// gives each of a handful of nodes dozens of shards, so load evens out, while
// a node claims them all in two Txns.
const DefaultShards = 256

// ShardOf is the shard of a watch id among n.
func ShardOf(id string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(id))
	return int(h.Sum64() % uint64(n))
}

// weight is the rendezvous (highest random weight) score of a node for a
// shard. Every node computes the same scores from the same member list, so
// they agree on owners without talking; when a node leaves, only its shards
// move, each to the node that scored second.
func weight(shard int, node string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(shard))
	h.Write(b[:])
	h.Write([]byte(node))
	return mix(h.Sum64())
}

// mix is splitmix64's finaliser: FNV alone leaves node names that differ in
// their last byte with correlated scores, which bunches shards on one node.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// ownerOf is the member that should hold shard; "" when there is none.
// Ties (never in practice) go to the smaller name, so all nodes agree.
func ownerOf(shard int, members []string) string {
	best, bestW := "", uint64(0)
	for _, m := range members {
		w := weight(shard, m)
		if best == "" || w > bestW || (w == bestW && m < best) {
			best, bestW = m, w
		}
	}
	return best
}
