package owner

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the user and process ids of the other end of a unix
// socket connection (SO_PEERCRED: as the peer was when it connected).
func peerCred(c net.Conn) (uid, pid int, err error) {
	var cred *unix.Ucred
	var serr error
	if err := withFD(c, func(fd int) { cred, serr = unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, 0, err
	}
	if serr != nil {
		return 0, 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return int(cred.Uid), int(cred.Pid), nil
}
