package owner

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the user id of the other end of a unix socket
// connection (LOCAL_PEERCRED); macOS does not give the process id here.
func peerCred(c net.Conn) (uid, pid int, err error) {
	var cred *unix.Xucred
	var serr error
	if err := withFD(c, func(fd int) { cred, serr = unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED) }); err != nil {
		return 0, 0, err
	}
	if serr != nil {
		return 0, 0, fmt.Errorf("LOCAL_PEERCRED: %w", serr)
	}
	return int(cred.Uid), 0, nil
}
