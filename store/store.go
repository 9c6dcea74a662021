// Package store persists tlswatch's watches in one bbolt file: the watch
// records, each watch's probe history (compact samples, hourly and daily
// aggregates, full Reports on change; see history.go), the alert state
// (which expiry stage has fired for which certificate fingerprint), an
// expiry index, the alert outbox and the alert feed, and a schema version
// with a migration path. It knows probe.Report but nothing of MCP.
//
// Layout (all keys are bytes; times are big-endian so keys sort by time):
//
//	meta         "schema_version" -> uint32
//	watches      id -> Record (compact binary, see codec.go)
//	targets      identity -> id              (Add is idempotent per target)
//	expiry       be64(not_after unix s) + id -> ""   (list_expiring, no full scan)
//	down         id -> ""                    (down watches, also listed as expiring)
//	alerts       id + "/" + sha256 fingerprint -> Alert (JSON)
//	outbox       entries: be64(seq) -> delivery; marks: key -> ""  (outbox.go)
//	feed         be64(seq) -> FeedEntry (JSON)                      (feed.go)
//	quarantine   id -> records that do not decode, set aside   (quarantine.go)
//	hist_*       probe history (history.go)
//
// History buckets are flat with composite keys rather than a nested bucket
// per watch: at 100,000 watches a nested bucket costs at least a page each
// once it outgrows inline storage, while a flat tree shares pages.
//
// Values returned by this package are decoded copies; nothing refers to
// bbolt's memory map after a transaction ends. Every write is committed
// (fsync) before the call returns.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
)

// Sentinel errors.
var (
	// ErrNotFound: no watch with that id.
	ErrNotFound = errors.New("store: watch not found")
	// ErrLocked: another process holds the database (bbolt's exclusive file
	// lock) and did not release it within Options.Timeout.
	ErrLocked = errors.New("store: database is held by another process")
	// ErrNewerSchema: the file was written by a newer tlswatch.
	ErrNewerSchema = errors.New("store: database schema is newer than this binary")
	// ErrSchemaMismatch: a read-only open of a file of another schema
	// (read-only opens do not migrate).
	ErrSchemaMismatch = errors.New("store: database schema differs from this binary's")
)

// SchemaVersion is the layout this binary writes.
const SchemaVersion = 4

var (
	// history and transitions are schema 1's probe history, converted to
	// the hist_* buckets by history_migrate.go.
	bMeta        = []byte("meta")
	bWatches     = []byte("watches")
	bTargets     = []byte("targets")
	bExpiry      = []byte("expiry")
	bDown        = []byte("down")
	bHistory     = []byte("history")
	bTransitions = []byte("transitions")
	bAlerts      = []byte("alerts")
	kSchema      = []byte("schema_version")
)

// migrations[v] upgrades a file from schema v to v+1 inside one transaction.
// Version 0 is a new or empty file. To change the layout: bump SchemaVersion
// and append the step; never edit a released step.
var migrations = []func(tx *bolt.Tx) error{
	0: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bWatches, bTargets, bExpiry, bDown, bHistory, bTransitions, bAlerts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	},
	// 2: the alert outbox (whose buckets schema-1 binaries created on
	// first use, outside the migrations, so they may exist already with
	// entries to keep) and the alert feed.
	1: func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bOutbox)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bOutbox, err)
		}
		for _, b := range [][]byte{bOutboxEntries, bOutboxMarks} {
			if _, err := root.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s/%s: %w", bOutbox, b, err)
			}
		}
		if _, err := tx.CreateBucketIfNotExists(bFeed); err != nil {
			return fmt.Errorf("create bucket %s: %w", bFeed, err)
		}
		return nil
	},
	// 3: the quarantine of records that do not decode.
	2: migrateQuarantine,
	// 4: probe history as samples, aggregates and Reports on change
	// (history.go); the schema-1 history is converted in the background.
	3: migrateHistoryBuckets,
}

// Options configure Open.
type Options struct {
	// Timeout bounds the wait for bbolt's exclusive file lock; without it a
	// second Open of the same file blocks forever. Default 1s.
	Timeout time.Duration
	// ReadOnly opens with a shared lock and no writes (no migration either).
	ReadOnly bool
	// OnDamage is called once, from the call that met it, when damage is
	// first seen in the open file (see DamageError): the place to tell the
	// operator while the process keeps serving what needs no file.
	OnDamage func(*DamageError)
	// Backup schedules automatic backups while the file is open for
	// writing (only the process that owns the file opens it so).
	Backup BackupOptions
	// Retention is how long history is kept (zero fields: the defaults).
	// Reads never return what is past it; Prune deletes it.
	Retention Retention
	// Now is the clock retention is measured against. Default time.Now.
	Now func() time.Time
}

// DB is an open store. It is safe for concurrent use.
type DB struct {
	bolt    *boltDB
	path    string
	outbox  *Outbox
	backups *backupLoop
	now     func() time.Time
	conf    Retention // as configured

	mu  sync.Mutex
	ret Retention // in force: conf, shortened while over the size budget
}

// Outbox is the alert delivery queue in this file. Entries are enqueued
// only inside Apply (Update.InTx), with the update that caused them.
func (db *DB) Outbox() *Outbox { return db.outbox }

// Open opens (creating if needed) the store at path and migrates it to
// SchemaVersion. It returns an error wrapping ErrLocked when another process
// holds the file.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: create directory for %s: %w", path, err)
		}
	}
	bdb, err := openCurrent(path, &bolt.Options{
		Timeout:  opts.Timeout,
		ReadOnly: opts.ReadOnly,
		// The map freelist keeps commits cheap on large files (100k watches
		// with deep history) where the array freelist's scans grow.
		FreelistType: bolt.FreelistMapType,
	}, opts.OnDamage)
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ret := opts.Retention.withDefaults()
	db := &DB{bolt: bdb, path: path, now: opts.Now, conf: ret, ret: ret}
	db.outbox = &Outbox{db: bdb}
	if opts.ReadOnly {
		// Without a migration the buckets of a newer layout are missing.
		if v, err := db.Schema(); err != nil || v != SchemaVersion {
			bdb.close()
			return nil, fmt.Errorf("store: open %s read-only: schema %d, this binary reads %d (open it once read-write to migrate): %w", path, v, SchemaVersion, errors.Join(err, ErrSchemaMismatch))
		}
		return db, nil
	}
	if err := db.migrate(); err != nil {
		bdb.close()
		return nil, err
	}
	db.backups = startBackups(db, opts.Backup)
	return db, nil
}

func (db *DB) migrate() error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bMeta)
		if err != nil {
			return fmt.Errorf("store: create meta bucket: %w", err)
		}
		v := 0
		if raw := meta.Get(kSchema); len(raw) == 4 {
			v = int(binary.BigEndian.Uint32(raw))
		}
		if v > SchemaVersion {
			return fmt.Errorf("%s has schema %d, this binary knows up to %d: %w", db.path, v, SchemaVersion, ErrNewerSchema)
		}
		for ; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("store: migrate %s from schema %d: %w", db.path, v, err)
			}
		}
		var buf [4]byte
		binary.BigEndian.PutUint32(buf[:], uint32(SchemaVersion))
		return meta.Put(kSchema, buf[:])
	})
}

// Close releases the file (and its lock).
func (db *DB) Close() error {
	db.backups.stop()
	if err := db.bolt.close(); err != nil {
		return fmt.Errorf("store: close %s: %w", db.path, err)
	}
	return nil
}

// Path is the file's path.
func (db *DB) Path() string { return db.path }

// Schema reports the file's schema version.
func (db *DB) Schema() (int, error) {
	v := 0
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bMeta); b != nil {
			if raw := b.Get(kSchema); len(raw) == 4 {
				v = int(binary.BigEndian.Uint32(raw))
			}
		}
		return nil
	})
	return v, err
}

// Record is a watch as persisted: its configuration and the watcher's state.
// The last report is not part of it: it is the newest history entry.
type Record struct {
	ID               string            `json:"id"`
	Target           probe.TargetInfo  `json:"target"`
	Path             string            `json:"path,omitempty"`
	Scheme           string            `json:"scheme,omitempty"` // STARTTLS scheme; empty for direct TLS
	TimeoutMS        int               `json:"timeout_ms,omitempty"`
	Schedule         string            `json:"schedule"`
	Thresholds       []probe.Threshold `json:"thresholds_days"`
	FailureThreshold int               `json:"failure_threshold"`
	ClientCert       string            `json:"client_cert,omitempty"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`

	State               string    `json:"state"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastCheckedAt       time.Time `json:"last_checked_at"`
	LastStatus          string    `json:"last_status,omitempty"`
	// NotAfter and Fingerprint describe the leaf of the newest report that
	// had one (zero when none ever did). NotAfter feeds the expiry index.
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	// FiredStage is the most severe expiry stage fired for the current
	// certificate ("30d", "36h", "20%", "expired"; empty when none): the
	// last of its Alert.Stages, mirrored here so that loading 100,000
	// watches does not read the alerts bucket.
	FiredStage string `json:"fired_stage,omitempty"`
	// RenewalCycle is how far apart the last two certificates' expiries
	// were (the renewal cycle the watch has seen); zero until a rotation.
	RenewalCycle time.Duration `json:"renewal_cycle,omitempty"`
	// HistoryCount and TransitionCount are maintained by the store;
	// callers' values are ignored.
	HistoryCount    int `json:"history_count"`
	TransitionCount int `json:"transition_count,omitempty"`

	// Probe is how the watch is probed beyond its target, stored with it so
	// that whichever process probes it does so the same way; nil when
	// nothing beyond the defaults (most watches: at 100,000 of them every
	// field a record carries counts).
	Probe *ProbeConfig `json:"probe,omitempty"`
	// MCP marks a watch that also checks the MCP protocol level.
	MCP bool `json:"mcp,omitempty"`
	// CreatedBy is who created the watch (an OAuth subject); ProbedBy the
	// node that probed it last (in a cluster).
	CreatedBy string `json:"created_by,omitempty"`
	ProbedBy  string `json:"probed_by,omitempty"`
	// MCPInfo is what the latest MCP-level probe that reached the server
	// saw, and MCPTools the tool list it saw, which the next probe's is
	// compared with.
	MCPInfo  *probe.MCPInfo  `json:"mcp_info,omitempty"`
	MCPTools []probe.MCPTool `json:"mcp_tools,omitempty"`
	// MCPRecent are the latest probes of an MCP-level watch, oldest first,
	// which its uptime and latency percentiles are computed from (package
	// watch bounds their number).
	MCPRecent []RecentProbe `json:"mcp_recent,omitempty"`

	// Rev is the version of the record in a store shared by several
	// writers (the etcd revision it was read or written at): a write
	// computed from this record commits only if the watch is unchanged
	// since. Not stored; always zero in this package.
	Rev int64 `json:"-"`
}

// RecentProbe is one probe of an MCP-level watch as its recent window
// keeps it: when, whether it succeeded (TLS and MCP), and the MCP
// latency. Stored to the microsecond.
type RecentProbe struct {
	At        time.Time `json:"at"`
	OK        bool      `json:"ok"`
	LatencyMS float64   `json:"latency_ms"`
}

// ProbeConfig is what a watch needs to be probed beyond its target.
type ProbeConfig struct {
	// Roots are extra trust roots (DER) given when the watch was created
	// (--ca-file, ca_pem), added to the prober's own trust store.
	Roots [][]byte `json:"roots,omitempty"`
	// ClientCertFile and ClientKeyFile locate the client certificate named
	// by Record.ClientCert (--client-cert NAME=CERT,KEY), so another process
	// can load it.
	ClientCertFile string `json:"client_cert_file,omitempty"`
	ClientKeyFile  string `json:"client_key_file,omitempty"`
	// Policy is the outbound policy of the process that created the watch;
	// a dial must pass it and the prober's own.
	Policy netpolicy.Config `json:"policy"`
	// TokenName names an operator token for a protected MCP endpoint.
	TokenName string `json:"token_name,omitempty"`
}

// IsZero reports whether c asks for nothing beyond the defaults.
func (c *ProbeConfig) IsZero() bool {
	return c == nil || (len(c.Roots) == 0 && c.ClientCertFile == "" && c.ClientKeyFile == "" && !c.Policy.DenyPrivate &&
		len(c.Policy.AllowCIDRs) == 0 && len(c.Policy.DenyCIDRs) == 0 && c.TokenName == "")
}

// Identity is the key that makes Add idempotent: host (case-folded), port,
// SNI, IP and, for STARTTLS targets, the scheme. Callers normalise SNI
// (empty when it equals the host).
func Identity(t probe.TargetInfo, scheme string) string {
	k := strings.ToLower(t.Host) + "|" + strconv.Itoa(t.Port) + "|" + strings.ToLower(t.SNI) + "|" + t.IP
	if scheme != "" {
		k += "|" + scheme
	}
	return k
}

// Identity of the record's target.
func (r *Record) Identity() string { return Identity(r.Target, r.Scheme) }

// Alert is the alert state of one certificate of one watch.
type Alert struct {
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
	FirstSeen   time.Time `json:"first_seen"`
	// Stages lists the stages fired, oldest first and each more severe
	// than the one before ("30d", "7d", "expired"; "36h", "20%" for hour
	// and percent thresholds): the last is the most severe so far.
	Stages []string `json:"stages"`
}

// Fired is the most severe stage fired for the certificate; empty when
// none.
func (a Alert) Fired() string {
	if len(a.Stages) == 0 {
		return ""
	}
	return a.Stages[len(a.Stages)-1]
}

// maxAlertsPerWatch bounds the fingerprints remembered per watch. Several are
// kept (not just the current one) so a host whose backends serve two
// certificates alternately does not re-fire the same stage on every flip.
const maxAlertsPerWatch = 8

// Update is one write of the watcher: a watch's new record, optionally a probe
// result for its history, and optionally the alert state of a certificate.
type Update struct {
	Record Record
	// Create allows the record to be new. Without it an update for a watch
	// that no longer exists (removed while its probe ran) is dropped, so a
	// late result never resurrects a removed watch.
	Create bool
	// Report is appended to the history when non-nil.
	Report *probe.Report
	// Transition also keeps Report in the transitions bucket (never pruned).
	Transition bool
	// Alert is stored for (Record.ID, Alert.Fingerprint) when non-nil.
	Alert *Alert
	// Feed entries are appended to the alert feed (their Seq assigned).
	Feed []FeedEntry
	// InTx, when set, runs inside Apply's transaction right after this
	// update is applied (never for an update that was dropped), so that
	// work caused by the update commits atomically with it: the watcher
	// queues alert deliveries (the outbox) this way, and a crash can then
	// neither lose an alert whose stage is recorded as fired nor queue one
	// whose state did not commit. An error aborts the whole transaction.
	// It is the only way entries enter the outbox.
	InTx func(tx OutboxTx) error
}

// Apply writes the updates in one transaction (one fsync): the watcher groups
// probe results this way so 100,000 probes an hour do not cost an fsync each.
// It returns, per update, whether it was applied.
func (db *DB) Apply(ups []Update) ([]bool, error) {
	applied := make([]bool, len(ups))
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for i := range ups {
			ok, err := applyOne(tx, &ups[i])
			if err != nil {
				return fmt.Errorf("store: update watch %s: %w", ups[i].Record.ID, err)
			}
			applied[i] = ok
			if !ok {
				continue
			}
			if err := appendFeed(tx, ups[i].Feed); err != nil {
				return fmt.Errorf("store: update watch %s: %w", ups[i].Record.ID, err)
			}
			if ups[i].InTx != nil {
				if err := ups[i].InTx(outboxTx{tx}); err != nil {
					return fmt.Errorf("store: update watch %s: commit hook: %w", ups[i].Record.ID, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

func applyOne(tx *bolt.Tx, u *Update) (bool, error) {
	rec := u.Record
	if rec.ID == "" || strings.Contains(rec.ID, "/") {
		return false, fmt.Errorf("invalid id %q", rec.ID)
	}
	id := []byte(rec.ID)
	watches := tx.Bucket(bWatches)
	var old *Record
	if raw := watches.Get(id); raw != nil {
		old = new(Record)
		if err := decodeRecord(raw, old); err != nil {
			return false, fmt.Errorf("decode record: %w", err)
		}
	} else if !u.Create {
		return false, nil
	}
	rec.HistoryCount, rec.TransitionCount = 0, 0
	if old != nil {
		rec.HistoryCount, rec.TransitionCount = old.HistoryCount, old.TransitionCount
	}
	if u.Report != nil {
		if err := appendProbe(tx, &rec, u.Report, u.Transition); err != nil {
			return false, err
		}
	}
	if u.Alert != nil {
		if err := putAlert(tx.Bucket(bAlerts), rec.ID, u.Alert); err != nil {
			return false, err
		}
	}
	if err := putIndexes(tx, old, &rec); err != nil {
		return false, err
	}
	if err := watches.Put(id, encodeRecord(&rec)); err != nil {
		return false, err
	}
	return true, nil
}

// putIndexes updates the target, expiry and down indexes from old (nil for
// a new watch) to rec.
func putIndexes(tx *bolt.Tx, old, rec *Record) error {
	id := []byte(rec.ID)
	targets := tx.Bucket(bTargets)
	ident := []byte(rec.Identity())
	if old != nil {
		if oi := old.Identity(); oi != string(ident) {
			if err := targets.Delete([]byte(oi)); err != nil {
				return err
			}
		}
		if !old.NotAfter.Equal(rec.NotAfter) && !old.NotAfter.IsZero() {
			if err := tx.Bucket(bExpiry).Delete(expiryKey(old.NotAfter, rec.ID)); err != nil {
				return err
			}
		}
	}
	// Unchanged entries are not put again: a put dirties its page, and
	// every probe result comes through here.
	if old == nil || old.Identity() != string(ident) {
		if err := targets.Put(ident, id); err != nil {
			return err
		}
	}
	if !rec.NotAfter.IsZero() && (old == nil || !old.NotAfter.Equal(rec.NotAfter)) {
		if err := tx.Bucket(bExpiry).Put(expiryKey(rec.NotAfter, rec.ID), nil); err != nil {
			return err
		}
	}
	down := tx.Bucket(bDown)
	if rec.State == "down" {
		if old != nil && old.State == "down" {
			return nil
		}
		return down.Put(id, nil)
	}
	if old != nil && old.State == "down" {
		return down.Delete(id)
	}
	return nil
}

func expiryKey(t time.Time, id string) []byte {
	s := t.Unix()
	if s < 0 {
		s = 0
	}
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(s))
	return append(k, id...)
}

func putAlert(b *bolt.Bucket, id string, a *Alert) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	if err := b.Put([]byte(id+"/"+a.Fingerprint), raw); err != nil {
		return err
	}
	// Forget the least recently first-seen certificates beyond the bound.
	prefix := []byte(id + "/")
	var all []Alert
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var x Alert
		if json.Unmarshal(v, &x) == nil {
			all = append(all, x)
		}
	}
	if len(all) <= maxAlertsPerWatch {
		return nil
	}
	sort.Slice(all, func(i, j int) bool { return all[i].FirstSeen.Before(all[j].FirstSeen) })
	for _, x := range all[:len(all)-maxAlertsPerWatch] {
		if x.Fingerprint == a.Fingerprint {
			continue
		}
		if err := b.Delete([]byte(id + "/" + x.Fingerprint)); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a watch with its history, transitions, alert state and
// index entries, appends feed (its removal) to the alert feed in the same
// transaction, and returns its last record.
func (db *DB) Delete(id string, feed ...FeedEntry) (Record, error) {
	var rec Record
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bWatches).Get([]byte(id))
		if raw == nil {
			return ErrNotFound
		}
		if err := decodeRecord(raw, &rec); err != nil {
			return fmt.Errorf("decode record: %w", err)
		}
		if err := tx.Bucket(bWatches).Delete([]byte(id)); err != nil {
			return err
		}
		targets := tx.Bucket(bTargets)
		ident := []byte(rec.Identity())
		if v := targets.Get(ident); string(v) == id {
			if err := targets.Delete(ident); err != nil {
				return err
			}
		}
		if !rec.NotAfter.IsZero() {
			if err := tx.Bucket(bExpiry).Delete(expiryKey(rec.NotAfter, id)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bDown).Delete([]byte(id)); err != nil {
			return err
		}
		if err := deleteHistory(tx, id); err != nil {
			return err
		}
		if err := deletePrefix(tx.Bucket(bAlerts), []byte(id+"/")); err != nil {
			return err
		}
		return appendFeed(tx, feed)
	})
	if errors.Is(err, ErrNotFound) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("store: delete watch %s: %w", id, err)
	}
	return rec, nil
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Lookup returns the id of the watch with that identity (see Identity).
func (db *DB) Lookup(identity string) (string, error) {
	var id string
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bTargets).Get([]byte(identity))
		if v == nil {
			return ErrNotFound
		}
		id = string(v)
		return nil
	})
	return id, err
}

// View is a record with its newest report.
type View struct {
	Record     Record
	LastReport *probe.Report
}

// Get returns one watch with its newest report.
func (db *DB) Get(id string) (View, error) {
	var v View
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		v, err = view(tx, []byte(id))
		return err
	})
	return v, err
}

func view(tx *bolt.Tx, id []byte) (View, error) {
	raw := tx.Bucket(bWatches).Get(id)
	if raw == nil {
		return View{}, ErrNotFound
	}
	var v View
	if err := decodeRecord(raw, &v.Record); err != nil {
		return View{}, fmt.Errorf("store: decode watch %s: %w", id, err)
	}
	rep, err := lastReport(tx, id)
	if err != nil {
		return View{}, fmt.Errorf("store: decode last report of %s: %w", id, err)
	}
	v.LastReport = rep
	return v, nil
}

// lastWithPrefix positions c on the greatest key with prefix.
func lastWithPrefix(c *bolt.Cursor, prefix []byte) ([]byte, []byte) {
	// prefix ends in '/', so prefix with '/'+1 is the first key after the
	// whole range.
	end := append(append([]byte(nil), prefix[:len(prefix)-1]...), '/'+1)
	k, _ := c.Seek(end)
	var v []byte
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, nil
	}
	return k, v
}

// List returns every watch with its newest report, in id order.
func (db *DB) List() ([]View, error) {
	var out []View
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bWatches).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			v, err := view(tx, k)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// ExpiringIDs answers list_expiring through the expiry and down indexes (no
// full scan, no record decoded): the ids from the expiry index (not_after
// before until, which includes those already expired; soonest first)
// followed by the down watches not already listed (in id order). The watcher, which holds every
// record in memory, uses it to answer list_expiring without decoding.
func (db *DB) ExpiringIDs(until time.Time) ([]string, error) {
	var out []string
	err := db.bolt.View(func(tx *bolt.Tx) error {
		seen := make(map[string]bool)
		c := tx.Bucket(bExpiry).Cursor()
		limit := until.Unix()
		for k, _ := c.First(); len(k) > 8; k, _ = c.Next() {
			if int64(binary.BigEndian.Uint64(k[:8])) >= limit {
				break
			}
			id := string(k[8:])
			seen[id] = true
			out = append(out, id)
		}
		return tx.Bucket(bDown).ForEach(func(k, _ []byte) error {
			if !seen[string(k)] {
				out = append(out, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: read expiry index: %w", err)
	}
	return out, nil
}

// Alert returns the alert state of one certificate of a watch.
func (db *DB) Alert(id, fingerprint string) (Alert, bool, error) {
	var a Alert
	found := false
	err := db.bolt.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bAlerts).Get([]byte(id + "/" + fingerprint))
		if raw == nil {
			return nil
		}
		found = true
		return json.Unmarshal(raw, &a)
	})
	if err != nil {
		return Alert{}, false, fmt.Errorf("store: read alert state of %s: %w", id, err)
	}
	return a, found, nil
}

// Alerts returns the alert state of every certificate of a watch that the
// store remembers (at most maxAlertsPerWatch), in fingerprint order.
func (db *DB) Alerts(id string) ([]Alert, error) {
	var out []Alert
	err := db.bolt.View(func(tx *bolt.Tx) error {
		prefix := []byte(id + "/")
		c := tx.Bucket(bAlerts).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var a Alert
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode %s: %w", k, err)
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read alert states of %s: %w", id, err)
	}
	return out, nil
}

// Stats are counts for diagnostics and benchmarks.
type Stats struct {
	Watches, HistoryEntries int
	FileBytes               int64
}

// Stats counts records (walks the watches and history buckets' headers).
func (db *DB) Stats() (Stats, error) {
	var s Stats
	err := db.bolt.View(func(tx *bolt.Tx) error {
		s.Watches = tx.Bucket(bWatches).Stats().KeyN
		s.HistoryEntries = tx.Bucket(bHistory).Stats().KeyN
		s.FileBytes = tx.Size()
		return nil
	})
	return s, err
}
