package store

// The alert feed is the durable record of every watcher event, so that a
// client that was away can catch up from a cursor. Entries are appended in
// the transaction that commits their cause (Update.Feed, Delete), so an
// event is in the feed exactly when its cause is on disk, once.
//
//	feed  be64(seq) -> FeedEntry (JSON)
//
// Sequence numbers come from the bucket's sequence: increasing, never
// reused, surviving restarts. The feed keeps the newest FeedKeep entries.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
)

// FeedKeep bounds the feed: the oldest entries beyond it are dropped.
const FeedKeep = 10000

var bFeed = []byte("feed")

// FeedEntry is one event in the alert feed. Its JSON is also how the feed
// is shown (package watch adds the cursor).
type FeedEntry struct {
	// Seq is assigned when the entry is appended (it is the key, not part
	// of the stored value).
	Seq         uint64    `json:"-"`
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Level       string    `json:"level"`
	Message     string    `json:"message"`
	WatchID     string    `json:"watch_id"`
	Target      string    `json:"target"`
	State       string    `json:"state,omitempty"`
	Status      string    `json:"status,omitempty"`
	ExpiryStage string    `json:"expiry_stage,omitempty"`
	// Subject is who created the watch (an OAuth subject), for filtering.
	Subject string `json:"subject,omitempty"`
	// ToolsChanged says what changed in an MCP-level watch's tool list
	// (kind mcp_tools_changed).
	ToolsChanged *probe.ToolsChange `json:"tools_changed,omitempty"`
}

// FeedPage is a slice of the feed.
type FeedPage struct {
	Entries []FeedEntry
	// Oldest is the sequence of the oldest entry kept (0 when the feed is
	// empty): a reader whose cursor is below Oldest-1 missed entries.
	Oldest uint64
	// Last is the sequence of the newest entry (0 when empty).
	Last uint64
}

func appendFeed(tx *bolt.Tx, entries []FeedEntry) error {
	if len(entries) == 0 {
		return nil
	}
	b := tx.Bucket(bFeed)
	var seq uint64
	for _, e := range entries {
		var err error
		if seq, err = b.NextSequence(); err != nil {
			return fmt.Errorf("feed: %w", err)
		}
		raw, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("feed: encode entry: %w", err)
		}
		if err := b.Put(feedKey(seq), raw); err != nil {
			return fmt.Errorf("feed: %w", err)
		}
	}
	// Sequences are contiguous (a rolled-back transaction rolls its
	// sequence back too), so everything at or below seq-FeedKeep goes.
	c := b.Cursor()
	for k, _ := c.First(); k != nil && seq >= FeedKeep && binary.BigEndian.Uint64(k) <= seq-FeedKeep; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("feed: prune: %w", err)
		}
	}
	return nil
}

// Feed returns up to limit entries with a sequence above after, oldest
// first.
func (db *DB) Feed(after uint64, limit int) (FeedPage, error) {
	var p FeedPage
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bFeed).Cursor()
		if k, _ := c.First(); k != nil {
			p.Oldest = binary.BigEndian.Uint64(k)
		}
		if k, _ := c.Last(); k != nil {
			p.Last = binary.BigEndian.Uint64(k)
		}
		for k, v := c.Seek(feedKey(after + 1)); k != nil && len(p.Entries) < limit; k, v = c.Next() {
			e := FeedEntry{Seq: binary.BigEndian.Uint64(k)}
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode entry %d: %w", e.Seq, err)
			}
			p.Entries = append(p.Entries, e)
		}
		return nil
	})
	if err != nil {
		return FeedPage{}, fmt.Errorf("store: read the alert feed: %w", err)
	}
	return p, nil
}

func feedKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}
