//go:build linux

package store

import (
	"fmt"
	"os"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// ReleaseMemory drops this process's page-table mappings of the database
// file (madvise MADV_DONTNEED on bbolt's read-only shared mapping). The data
// stays in the OS page cache and the next read maps it again, so this is
// safe at any time; it only lowers resident memory.
//
// Why: Linux maps up to 16 neighbouring pages on every page fault of a file
// mapping ("fault-around"). Records and history pages are interleaved in the
// file, so reading the 100,000 records at start made ~220 MB of the file
// resident for ~25 MB of records. The watcher calls this after such scans
// and periodically while it writes.
func (db *DB) ReleaseMemory() error {
	return db.bolt.View(func(tx *bolt.Tx) error { return db.releaseMapping(tx) })
}

// releaseMapping is ReleaseMemory inside a transaction, which pins the
// mapping: bbolt cannot remap it while we advise on it.
func (db *DB) releaseMapping(tx *bolt.Tx) error {
	info := tx.DB().Info()
	size := uintptr(tx.Size())
	if info == nil || info.Data == 0 || size == 0 {
		return nil
	}
	if info.Data%uintptr(os.Getpagesize()) != 0 {
		return nil // not the start of a mapping: leave it alone
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, info.Data, size, syscall.MADV_DONTNEED); errno != 0 {
		return fmt.Errorf("store: madvise %s: %w", db.path, errno)
	}
	return nil
}
