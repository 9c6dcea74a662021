//go:build unix

package main

import "syscall"

// raiseNoFile raises the soft limit on open descriptors to the hard limit
// (the Go runtime does the same at start on most systems; doing it here
// makes it explicit and reports the result) and returns the soft limit in
// effect, 0 when unknown.
func raiseNoFile() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	if l.Cur < l.Max {
		n := l
		n.Cur = n.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n) == nil {
			l = n
		}
	}
	return l.Cur
}
