//go:build !linux

package store

// ReleaseMemory is a no-op outside Linux (see release_linux.go).
func (db *DB) ReleaseMemory() error { return nil }
