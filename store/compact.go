package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt never gives pages back to the file system: pruned history becomes
// free pages that later writes reuse, so the file stops growing but does
// not shrink. Compaction copies every key into a new file with full pages
// and renames it over the old one.
//
// Swapping the file under other processes is safe because of two rules:
//
//  1. Only the process holding the file's lock swaps it, and it keeps that
//     lock until the new file is in place: it opens (and locks) the new
//     file, renames it over the path, and only then closes the old one.
//  2. Open checks, once it has the lock, that the path still names the file
//     it locked (a process that opened the path before the rename and waited
//     for the lock would otherwise get the old, unlinked file). If not, it
//     opens the path again, and finds the new file locked: ErrLocked, so it
//     follows the owner instead of writing to a file nobody will read.

// errReplaced: the path named another file by the time its lock was taken.
var errReplaced = errors.New("store: the file was replaced while its lock was awaited")

// replaced reports whether path no longer names the open file f (rule 2).
func replaced(path string, f *os.File) bool {
	if f == nil {
		return false
	}
	held, err1 := f.Stat()
	cur, err2 := os.Stat(path)
	return err1 == nil && (err2 != nil || !os.SameFile(held, cur))
}

// openCurrent is openBolt, again as long as the file it locked is no longer
// the one at path.
func openCurrent(path string, o *bolt.Options, onDamage func(*DamageError)) (*boltDB, error) {
	for range 10 {
		b, err := openBolt(path, o, onDamage)
		if !errors.Is(err, errReplaced) {
			return b, err
		}
	}
	return nil, fmt.Errorf("open %s: the file keeps being replaced: %w", path, ErrLocked)
}

// CompactResult is a compaction's outcome: the file's size on disk before
// and after, and Live, the data in the new file (up to its highest page;
// bbolt sizes the file itself in larger steps).
type CompactResult struct {
	Before, After, Live int64
}

// CompactFile compacts the database at path in place. It fails with
// ErrLocked while another process has the file open (that process, the
// owner, compacts it: DB.Compact). timeout bounds the wait for the lock (0:
// one second).
func CompactFile(path string, timeout time.Duration) (CompactResult, error) {
	if timeout <= 0 {
		timeout = time.Second
	}
	src, err := openCurrent(path, &bolt.Options{Timeout: timeout, FreelistType: bolt.FreelistMapType}, nil)
	if err != nil {
		return CompactResult{}, err
	}
	defer src.close()
	return compactOpen(src.DB, path, timeout)
}

// compactOpen compacts the open file src (whose lock the caller holds) by
// rules 1 and 2 above. src stays open; the caller closes it after.
func compactOpen(src *bolt.DB, path string, timeout time.Duration) (CompactResult, error) {
	res, dst, err := copyAndSwap(src, path, timeout)
	if err != nil {
		return res, err
	}
	if err := dst.Close(); err != nil {
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}
	return res, nil
}

// copyAndSwap copies src into a new file next to path, syncs it and renames
// it over path, and returns the new file still open (and locked).
func copyAndSwap(src *bolt.DB, path string, timeout time.Duration) (CompactResult, *bolt.DB, error) {
	var res CompactResult
	if st, err := os.Stat(path); err == nil {
		res.Before = st.Size()
	}
	tmp := path + ".compact"
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: timeout, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return res, nil, fmt.Errorf("store: compact %s: create %s: %w", path, tmp, err)
	}
	fail := func(err error) (CompactResult, *bolt.DB, error) {
		dst.Close()
		os.Remove(tmp)
		return res, nil, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if err := bolt.Compact(dst, src, 64<<20); err != nil {
		return fail(err)
	}
	if err := dst.Sync(); err != nil {
		return fail(err)
	}
	dst.NoSync = false // from here on it is the database
	dst.View(func(tx *bolt.Tx) error { res.Live = tx.Size(); return nil })
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fail(err)
	}
	if st, err := os.Stat(path); err == nil {
		res.After = st.Size()
	}
	return res, dst, nil
}

// Compact compacts the open database in place: the online copy and swap
// of the process that owns the file. Every call on db waits meanwhile (a
// second or so per 100 MB); the process keeps the file locked throughout
// and carries on with the new one.
func (db *DB) Compact() (CompactResult, error) {
	b := db.bolt
	if b.IsReadOnly() {
		return CompactResult{}, fmt.Errorf("store: compact %s: opened read-only", db.path)
	}
	if d := b.Damaged(); d != nil {
		return CompactResult{}, d
	}
	b.gate.Lock()
	defer b.gate.Unlock()
	res, dst, err := copyAndSwap(b.DB, db.path, time.Second)
	if err != nil {
		return res, err
	}
	old := b.DB
	b.DB = dst
	if err := old.Close(); err != nil {
		return res, fmt.Errorf("store: compact %s: close the old file: %w", db.path, err)
	}
	return res, nil
}
