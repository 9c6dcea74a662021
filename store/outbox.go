package store

// The outbox holds alert deliveries that have not been acknowledged by their
// receiver yet (package alert plans and delivers them). It lives in the same
// bbolt file as the watches, and entries enter it only inside the
// transaction that records what caused them (Update.InTx), so that "the
// watcher decided to alert" and "the alert is queued" survive a crash
// together. Its buckets are created by the schema-2 migration:
//
//	outbox/entries  be64(id) -> entry (binary header + opaque payload)
//	outbox/marks    key -> ""   (small persistent flags beside the queue)
//
// Keys are big-endian sequence numbers, so a cursor walks entries in the
// order they were enqueued; Due relies on that to keep each channel FIFO.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrOutboxEntryNotFound: no outbox entry with that id (already delivered or
// dropped).
var ErrOutboxEntryNotFound = errors.New("store: outbox entry not found")

var (
	bOutbox        = []byte("outbox")
	bOutboxEntries = []byte("entries")
	bOutboxMarks   = []byte("marks")
)

// OutboxEntry is one pending delivery of one payload to one channel.
type OutboxEntry struct {
	// ID is assigned when the entry is enqueued (increasing; never reused
	// in a file).
	ID uint64
	// Channel names the receiver (the alert channel's configured name).
	Channel string
	// Payload is opaque to the store.
	Payload []byte
	// CreatedAt is when the entry was enqueued; give-up ages count from it.
	CreatedAt time.Time
	// NextAt is the earliest time of the next attempt. Zero at Enqueue means
	// CreatedAt (due at once).
	NextAt time.Time
	// Attempts counts failed attempts so far.
	Attempts int
	// LastError is the reason of the last failed attempt, for operators.
	LastError string
}

// Outbox is the delivery side of the queue: a persistent FIFO of deliveries
// per channel. It is safe for concurrent use; every write is committed
// (fsync) before the call returns.
type Outbox struct {
	db *boltDB
}

// OutboxTx is the outbox inside a write transaction (Update.InTx): what is
// enqueued there commits, or not, with the update that caused it.
type OutboxTx interface {
	// Marked reports which of keys are set.
	Marked(keys ...string) (map[string]bool, error)
	// Enqueue stores entries and sets (true) or clears (false) marks, so
	// that a flag such as "this channel was told the watch is down" can
	// never disagree with what was queued.
	Enqueue(marks map[string]bool, entries ...OutboxEntry) error
	// OnCommit runs fn after the transaction has committed (not when it
	// rolls back): the place to wake whoever delivers the entries.
	OnCommit(fn func())
}

type outboxTx struct{ tx *bolt.Tx }

func (t outboxTx) OnCommit(fn func()) { t.tx.OnCommit(fn) }

func (t outboxTx) Marked(keys ...string) (map[string]bool, error) {
	return marked(t.tx, keys), nil
}

func (t outboxTx) Enqueue(marks map[string]bool, entries ...OutboxEntry) error {
	if _, err := enqueue(t.tx, marks, entries); err != nil {
		return fmt.Errorf("store: outbox enqueue %d entries: %w", len(entries), err)
	}
	return nil
}

func enqueue(tx *bolt.Tx, marks map[string]bool, entries []OutboxEntry) ([]uint64, error) {
	for i := range entries {
		if entries[i].Channel == "" {
			return nil, fmt.Errorf("entry %d has no channel", i)
		}
		if len(entries[i].Channel) > math.MaxUint16 || len(entries[i].LastError) > math.MaxUint16 {
			return nil, fmt.Errorf("entry %d: channel or error text too long", i)
		}
	}
	ids := make([]uint64, 0, len(entries))
	b := outboxEntries(tx)
	for _, e := range entries {
		id, err := b.NextSequence()
		if err != nil {
			return nil, err
		}
		if e.NextAt.IsZero() {
			e.NextAt = e.CreatedAt
		}
		if err := b.Put(outboxKey(id), encodeOutboxEntry(e)); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	m := outboxMarks(tx)
	for k, set := range marks {
		var err error
		if set {
			err = m.Put([]byte(k), nil)
		} else {
			err = m.Delete([]byte(k))
		}
		if err != nil {
			return nil, fmt.Errorf("mark %q: %w", k, err)
		}
	}
	return ids, nil
}

func marked(tx *bolt.Tx, keys []string) map[string]bool {
	out := make(map[string]bool, len(keys))
	if m := outboxMarks(tx); m != nil {
		for _, k := range keys {
			if m.Get([]byte(k)) != nil {
				out[k] = true
			}
		}
	}
	return out
}

// Marked reports which of keys are set.
func (o *Outbox) Marked(keys ...string) (map[string]bool, error) {
	var out map[string]bool
	err := o.db.View(func(tx *bolt.Tx) error {
		out = marked(tx, keys)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox marks: %w", err)
	}
	return out, nil
}

// Marks lists every mark set.
func (o *Outbox) Marks() ([]string, error) {
	var out []string
	err := o.db.View(func(tx *bolt.Tx) error {
		return outboxMarks(tx).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox marks: %w", err)
	}
	return out, nil
}

// Due returns up to limit entries that may be attempted at now, in enqueue
// order. Each channel is a FIFO: once a channel's oldest entry is not due
// (it is backing off), none of that channel's later entries is returned, so a
// "resolve" can never overtake the "trigger" it resolves. limit <= 0 means no
// limit.
//
// An entry that cannot be decoded is returned at once with only its ID set
// (no Channel), so that the caller can Drop it instead of it blocking the
// queue forever.
func (o *Outbox) Due(now time.Time, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := o.db.View(func(tx *bolt.Tx) error {
		blocked := map[string]bool{}
		c := outboxEntries(tx).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e := OutboxEntry{}
			h, err := decodeOutboxHeader(v)
			if err == nil && blocked[h.channel] {
				continue
			}
			if err == nil && h.nextAt > now.UnixNano() {
				blocked[h.channel] = true
				continue
			}
			if err == nil {
				e, err = decodeOutboxEntry(k, v)
			}
			if err != nil {
				e = OutboxEntry{ID: outboxID(k)}
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox due: %w", err)
	}
	return out, nil
}

// NextDue is the earliest time at which Due will return something: the
// soonest NextAt among the channels' oldest entries. ok is false when the
// outbox is empty.
func (o *Outbox) NextDue() (next time.Time, ok bool, err error) {
	var min int64
	err = o.db.View(func(tx *bolt.Tx) error {
		seen := map[string]bool{}
		c := outboxEntries(tx).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			h, err := decodeOutboxHeader(v)
			if err != nil {
				// Due hands corrupt entries out at once for dropping.
				h = outboxHeader{nextAt: 0, channel: string(k)}
			}
			if seen[h.channel] {
				continue
			}
			seen[h.channel] = true
			if !ok || h.nextAt < min {
				min, ok = h.nextAt, true
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store: outbox next due: %w", err)
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return time.Unix(0, min), true, nil
}

// Pending returns up to limit entries in enqueue order, due or not (for
// status displays and tests). limit <= 0 means all.
func (o *Outbox) Pending(limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := o.db.View(func(tx *bolt.Tx) error {
		c := outboxEntries(tx).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e, err := decodeOutboxEntry(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox pending: %w", err)
	}
	return out, nil
}

// MarkDelivered removes a delivered entry. The deletion is the record of
// success: once it is committed a restart cannot resend the entry. A missing
// id is not an error (it was already removed).
func (o *Outbox) MarkDelivered(id uint64) error {
	if err := o.delete(id); err != nil {
		return fmt.Errorf("store: outbox mark %d delivered: %w", id, err)
	}
	return nil
}

// Drop removes an entry that will never be delivered (permanent failure,
// gave up, unknown channel). A missing id is not an error.
func (o *Outbox) Drop(id uint64) error {
	if err := o.delete(id); err != nil {
		return fmt.Errorf("store: outbox drop %d: %w", id, err)
	}
	return nil
}

func (o *Outbox) delete(id uint64) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		return outboxEntries(tx).Delete(outboxKey(id))
	})
}

// Reschedule records a failed attempt: the entry is next due at next.
// It returns an error wrapping ErrOutboxEntryNotFound when id is gone.
func (o *Outbox) Reschedule(id uint64, next time.Time, attempts int, lastErr string) error {
	if len(lastErr) > 1024 {
		// Bounded: a receiver's error page must not bloat the file.
		lastErr = lastErr[:1024]
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := outboxEntries(tx)
		k := outboxKey(id)
		v := b.Get(k)
		if v == nil {
			return ErrOutboxEntryNotFound
		}
		e, err := decodeOutboxEntry(k, v)
		if err != nil {
			return err
		}
		e.NextAt, e.Attempts, e.LastError = next, attempts, lastErr
		return b.Put(k, encodeOutboxEntry(e))
	})
	if err != nil {
		return fmt.Errorf("store: outbox reschedule %d: %w", id, err)
	}
	return nil
}

// Len is the number of pending entries.
func (o *Outbox) Len() (int, error) {
	n := 0
	err := o.db.View(func(tx *bolt.Tx) error {
		n = outboxEntries(tx).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: outbox len: %w", err)
	}
	return n, nil
}

func outboxEntries(tx *bolt.Tx) *bolt.Bucket {
	return tx.Bucket(bOutbox).Bucket(bOutboxEntries)
}

func outboxMarks(tx *bolt.Tx) *bolt.Bucket {
	return tx.Bucket(bOutbox).Bucket(bOutboxMarks)
}

func outboxID(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

func outboxKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

// Entry encoding. A fixed binary header lets Due and NextDue read a
// channel and a due time without decoding or copying payloads, which matters
// when a receiver has been down for hours and thousands of entries wait:
//
//	version   1 byte (1)
//	next_at   int64 unix ns
//	created   int64 unix ns
//	attempts  uint32
//	channel   uint16 length + bytes
//	last_err  uint16 length + bytes
//	payload   the rest
const outboxEntryVersion = 1

const outboxFixedLen = 1 + 8 + 8 + 4 + 2

type outboxHeader struct {
	nextAt  int64
	channel string
}

func encodeOutboxEntry(e OutboxEntry) []byte {
	buf := make([]byte, 0, outboxFixedLen+len(e.Channel)+2+len(e.LastError)+len(e.Payload))
	buf = append(buf, outboxEntryVersion)
	buf = binary.BigEndian.AppendUint64(buf, uint64(unixNanoOrZero(e.NextAt)))
	buf = binary.BigEndian.AppendUint64(buf, uint64(unixNanoOrZero(e.CreatedAt)))
	attempts := e.Attempts
	if attempts < 0 {
		attempts = 0
	}
	if attempts > math.MaxUint32 {
		attempts = math.MaxUint32
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(attempts))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(e.Channel)))
	buf = append(buf, e.Channel...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(e.LastError)))
	buf = append(buf, e.LastError...)
	return append(buf, e.Payload...)
}

func unixNanoOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeFromNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

var errOutboxCorrupt = errors.New("corrupt outbox entry")

// decodeOutboxHeader reads the header only; the channel string is a copy, so
// it stays valid after the transaction.
func decodeOutboxHeader(v []byte) (outboxHeader, error) {
	if len(v) < outboxFixedLen || v[0] != outboxEntryVersion {
		return outboxHeader{}, errOutboxCorrupt
	}
	n := int(binary.BigEndian.Uint16(v[outboxFixedLen-2:]))
	if len(v) < outboxFixedLen+n {
		return outboxHeader{}, errOutboxCorrupt
	}
	return outboxHeader{
		nextAt:  int64(binary.BigEndian.Uint64(v[1:])),
		channel: string(v[outboxFixedLen : outboxFixedLen+n]),
	}, nil
}

// decodeOutboxEntry copies everything out of bbolt's memory map.
func decodeOutboxEntry(k, v []byte) (OutboxEntry, error) {
	if len(k) != 8 {
		return OutboxEntry{}, fmt.Errorf("outbox key %x: %w", k, errOutboxCorrupt)
	}
	id := binary.BigEndian.Uint64(k)
	h, err := decodeOutboxHeader(v)
	if err != nil {
		return OutboxEntry{}, fmt.Errorf("entry %d: %w", id, err)
	}
	rest := v[outboxFixedLen+len(h.channel):]
	if len(rest) < 2 {
		return OutboxEntry{}, fmt.Errorf("entry %d: %w", id, errOutboxCorrupt)
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+n {
		return OutboxEntry{}, fmt.Errorf("entry %d: %w", id, errOutboxCorrupt)
	}
	return OutboxEntry{
		ID:        id,
		Channel:   h.channel,
		NextAt:    timeFromNano(h.nextAt),
		CreatedAt: timeFromNano(int64(binary.BigEndian.Uint64(v[9:]))),
		Attempts:  int(binary.BigEndian.Uint32(v[17:])),
		LastError: string(rest[2 : 2+n]),
		Payload:   append([]byte(nil), rest[2+n:]...),
	}, nil
}
