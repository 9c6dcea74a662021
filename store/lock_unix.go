//go:build !windows && !plan9 && !solaris && !aix && !android

package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes the lock bbolt takes (flock, exclusive) on path without
// waiting, so that nothing opens the database while Restore replaces it. It
// fails with ErrLocked when a process holds the database. A missing file
// needs no lock.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
