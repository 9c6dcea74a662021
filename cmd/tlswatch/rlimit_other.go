//go:build !unix

package main

// raiseNoFile is a no-op where there is no RLIMIT_NOFILE; 0 means unknown.
func raiseNoFile() uint64 { return 0 }
