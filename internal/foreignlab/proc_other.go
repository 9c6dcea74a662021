//go:build !linux

package foreignlab

import "syscall"

// sysProcAttr puts the server in its own process group, so that cleanup
// stops its children too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
