package store

// bbolt trusts its file: pages carry no checksum, and a damaged page makes it
// panic (a failed assertion such as "Page expected to be: 2, but self
// identifies as 7", "invalid freelist page") or fault (SIGBUS on a mapping
// past the end of a truncated file). Left alone, either kills the process
// with a goroutine trace on the next read or write. Every entry into bbolt
// from this package therefore goes through one guard, boltDB, which turns
// such a panic or fault into a *DamageError (errors.Is ErrDamaged) naming the
// file, what the store was doing and what bbolt said. Once damage has been
// seen, writes are refused without entering bbolt again: a write on a file
// bbolt cannot read spreads the damage, and a panic in the middle of a
// commit can leave bbolt's writer lock held.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	// ErrDamaged: the file is a tlswatch database that bbolt can no longer
	// read consistently (see DamageError).
	ErrDamaged = errors.New("store: database is damaged")
	// ErrNotDatabase: the path holds something that is not a tlswatch
	// database (an empty file, another program's file, a directory). The
	// store never initialises over it.
	ErrNotDatabase = errors.New("store: not a tlswatch database")
)

// NotDatabaseError says why a path is not a tlswatch database.
type NotDatabaseError struct {
	Path   string
	Reason string // "it is empty (0 bytes)", ...
}

func (e *NotDatabaseError) Error() string {
	return fmt.Sprintf("%s is not a tlswatch database: %s", e.Path, e.Reason)
}

// Unwrap makes errors.Is(err, ErrNotDatabase) hold.
func (e *NotDatabaseError) Unwrap() error { return ErrNotDatabase }

// DamageError reports damage met in a database file.
type DamageError struct {
	// Path is the database file.
	Path string
	// Op is what the store was doing when it met the damage ("open",
	// "read (List)", "write (Apply)", "check").
	Op string
	// Detail is what bbolt (or the runtime, for a fault) said.
	Detail string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("database %s is damaged (%s: %s)", e.Path, e.Op, e.Detail)
}

// Unwrap makes errors.Is(err, ErrDamaged) hold.
func (e *DamageError) Unwrap() error { return ErrDamaged }

// boltDB is a bbolt handle whose transactions are guarded. It embeds the
// handle for what never reads pages (Path, IsReadOnly; Stats and Info go
// through the gate). The gate lets an online compaction (compact.go) swap
// the handle for one on the compacted file: transactions hold it shared,
// the swap exclusively, so none runs on the old file after the swap. A
// transaction must not start another on the same boltDB (it would wait on
// the gate behind a waiting swap).
type boltDB struct {
	*bolt.DB
	gate     sync.RWMutex
	path     string
	damaged  atomic.Pointer[DamageError]
	onDamage func(*DamageError)
}

// View is bolt.DB.View, guarded.
func (b *boltDB) View(fn func(*bolt.Tx) error) error {
	b.gate.RLock()
	defer b.gate.RUnlock()
	return b.contain("read", func() error { return b.DB.View(fn) })
}

// Update is bolt.DB.Update, guarded; refused once damage has been seen.
func (b *boltDB) Update(fn func(*bolt.Tx) error) error {
	if d := b.damaged.Load(); d != nil {
		return d
	}
	b.gate.RLock()
	defer b.gate.RUnlock()
	return b.contain("write", func() error { return b.DB.Update(fn) })
}

// Stats is bolt.DB.Stats of the current handle.
func (b *boltDB) Stats() bolt.Stats {
	b.gate.RLock()
	defer b.gate.RUnlock()
	return b.DB.Stats()
}

// Info is bolt.DB.Info of the current handle.
func (b *boltDB) Info() *bolt.Info {
	b.gate.RLock()
	defer b.gate.RUnlock()
	return b.DB.Info()
}

// Batch is Update: bbolt's Batch may commit on a timer goroutine, where a
// panic could not be contained.
func (b *boltDB) Batch(fn func(*bolt.Tx) error) error { return b.Update(fn) }

// Damaged returns the damage seen so far, or nil.
func (b *boltDB) Damaged() *DamageError { return b.damaged.Load() }

// contain runs fn with faults turned into panics and every panic into a
// *DamageError, remembered for the next write.
func (b *boltDB) contain(op string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = b.damage(&DamageError{Path: b.path, Op: op + caller(), Detail: panicText(r)})
		}
	}()
	return fn()
}

// damage records d as the first damage seen (and reports it once) and
// returns it.
func (b *boltDB) damage(d *DamageError) *DamageError {
	if b.damaged.CompareAndSwap(nil, d) && b.onDamage != nil {
		b.onDamage(d)
	}
	return d
}

// close closes the handle. After damage it does not wait more than a
// second: a panic in the middle of a commit can leave bbolt's writer lock
// held, and its Close takes that lock.
func (b *boltDB) close() error {
	if b.damaged.Load() == nil {
		return b.DB.Close()
	}
	done := make(chan error, 1)
	go func() { done <- b.DB.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		return fmt.Errorf("%s: damaged, and bbolt did not release it", b.path)
	}
}

func panicText(r any) string {
	if f, ok := r.(interface{ Addr() uintptr }); ok {
		// debug.SetPanicOnFault: a read of the mapping past the end of
		// the file.
		return fmt.Sprintf("memory fault at %#x reading the file: it is shorter than its pages say (cut short while open?)", f.Addr())
	}
	s := fmt.Sprint(r)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// caller names the store method that entered bbolt (" (List)"), from the
// stack at recovery; "" when it cannot tell.
func caller() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	entered := false
	for {
		f, more := frames.Next()
		name := f.Function
		if entered && strings.Contains(name, "/store.") && !strings.Contains(name, "boltDB") {
			name = name[strings.LastIndex(name, "/store.")+len("/store."):]
			name = strings.TrimPrefix(name, "(*DB).")
			name = strings.NewReplacer("(*", "", ")", "").Replace(name)
			if i := strings.Index(name, ".func"); i > 0 {
				name = name[:i]
			}
			return " (" + name + ")"
		}
		for _, m := range []string{"(*boltDB).View", "(*boltDB).Update", "(*boltDB).Batch"} {
			entered = entered || strings.HasSuffix(name, m)
		}
		if !more {
			return ""
		}
	}
}

// openBolt opens path with bbolt, guarded. Only a path that does not exist
// becomes a new database; an empty or foreign file is ErrNotDatabase, a
// damaged one a *DamageError.
func openBolt(path string, o *bolt.Options, onDamage func(*DamageError)) (*boltDB, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && o.ReadOnly:
		return nil, fmt.Errorf("store: no database at %s: %w", path, err)
	case errors.Is(err, os.ErrNotExist):
		if err := createBolt(path, o); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return nil, &NotDatabaseError{Path: path, Reason: "it is not a regular file"}
	case fi.Size() == 0:
		return nil, &NotDatabaseError{Path: path, Reason: "it is empty (0 bytes), so it holds no watches, and tlswatch creates a database only where no file exists"}
	}
	if err := precheck(path); err != nil {
		return nil, err
	}
	b := &boltDB{path: path}
	var file *os.File
	opts := *o
	opts.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag&^os.O_CREATE, perm)
		file = f
		return f, err
	}
	err = b.contain("open", func() (err error) {
		b.DB, err = bolt.Open(path, 0o600, &opts)
		return err
	})
	if d := b.Damaged(); d != nil {
		if file != nil {
			file.Close() // releases the lock bbolt took before it panicked
		}
		return nil, d
	}
	if err != nil {
		return nil, openError(path, err)
	}
	if replaced(path, file) {
		b.close() // a compaction swapped the file while we waited (compact.go)
		return nil, errReplaced
	}
	if err := b.checkForeign(); err != nil {
		b.close()
		return nil, err
	}
	// Damage met while opening is the caller's error; from here on it is
	// news.
	b.onDamage = onDamage
	return b, nil
}

// openError classifies an error of bolt.Open.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("open %s: %w", path, ErrLocked)
	case errors.Is(err, bolterrors.ErrChecksum):
		return &DamageError{Path: path, Op: "open", Detail: "both meta pages fail their checksum"}
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch):
		return &NotDatabaseError{Path: path, Reason: fmt.Sprintf("it is not a bbolt file (%v)", err)}
	}
	return fmt.Errorf("store: open %s: %w", path, err)
}

// createBolt makes a new, empty bbolt file at path without ever leaving an
// empty file there: it is built aside and linked into place, so a process
// that starts at the same moment sees either nothing or a whole database
// (and an empty file at path can then only be damage).
func createBolt(path string, o *bolt.Options) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	bdb, err := bolt.Open(name, 0o600, &bolt.Options{Timeout: o.Timeout, FreelistType: o.FreelistType})
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	if err := bdb.Close(); err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	if err := os.Link(name, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// checkForeign refuses a bbolt file of another program (buckets, but not
// ours); a file with no bucket at all is a new one.
func (b *boltDB) checkForeign() error {
	return b.contain("open", func() error {
		return b.DB.View(func(tx *bolt.Tx) error {
			if tx.Bucket(bMeta) != nil {
				return nil
			}
			var names []string
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				names = append(names, fmt.Sprintf("%q", name))
				return nil
			})
			if len(names) > 0 {
				return &NotDatabaseError{Path: b.path, Reason: "it is a bbolt file of another program (buckets " + strings.Join(names, ", ") + ")"}
			}
			return nil
		})
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
