//go:build !linux

package store

import bolt "go.etcd.io/bbolt"

// ReleaseMemory is a no-op outside Linux (see release_linux.go).
func (db *DB) ReleaseMemory() error { return nil }

func (db *DB) releaseMapping(*bolt.Tx) error { return nil }
