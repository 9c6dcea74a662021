package owner

// The owner's socket is a file path, and a path can be taken by someone
// else: a stale socket replaced by another program, or, for a database path
// too long for a socket address, a name under the shared temporary
// directory that another user created first. A follower that trusted
// whatever answers there would hang on a listener that never replies (every
// call waiting out its deadline) or talk to another user's process. So a
// follower checks the peer before it follows: the same user as itself
// (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS), then a handshake (the
// change stream's head) that must be answered within handshakeTimeout.
// What fails either is a squatter: reported, and bypassed: the follower
// takes the database itself if nobody holds it (the new owner replaces the
// socket), else its calls fail at once saying so, instead of hanging.
// The owner refuses connections from other users too.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// handshakeTimeout bounds the wait for the owner's first answer: a real
// owner answers in well under a millisecond.
const handshakeTimeout = time.Second

// squatError: what listens on the owner's socket is not a tlswatch owner
// of this user.
type squatError struct {
	path   string
	reason string
}

func (e *squatError) Error() string {
	return fmt.Sprintf("%s is not a tlswatch owner's socket (%s); remove that file, or stop what listens on it", e.path, e.reason)
}

// errNoPeerCred: this platform cannot tell who the peer is; the handshake
// alone decides.
var errNoPeerCred = errors.New("peer credentials not available on this platform")

// checkPeer refuses a peer that is not the user uid.
func checkPeer(c net.Conn, uid int) error {
	peer, pid, err := peerCred(c)
	if errors.Is(err, errNoPeerCred) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot tell who listens: %w", err)
	}
	if peer != uid {
		return fmt.Errorf("it belongs to user %d (process %d), not to user %d", peer, pid, uid)
	}
	return nil
}

// sameUser is checkPeer against this process's user.
func sameUser(c net.Conn) error { return checkPeer(c, os.Getuid()) }

// withFD runs fn on the descriptor of a unix socket connection.
func withFD(c net.Conn, fn func(fd int)) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("not a unix socket connection (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	return raw.Control(func(fd uintptr) { fn(int(fd)) })
}
