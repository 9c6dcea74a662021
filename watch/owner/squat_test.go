package owner

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// garbage is what a squatter that speaks another protocol answers.
var garbage = []byte(strings.Repeat("HTTP/1.1 400 Bad Request\r\n\r\nnot what you think\n", 20))

// A squatter on the socket of a database that another process owns: the
// follower detects it within 2 s (silent or speaking another protocol),
// says so, and its calls fail at once, not after their deadline; once the
// owner goes away, the follower takes the database over.
func TestSquattedSocketWhileOwned(t *testing.T) {
	for name, reply := range map[string][]byte{"silent": nil, "garbage": garbage} {
		t.Run(name, func(t *testing.T) {
			db := dbPath(t)
			a, err := Open(context.Background(), testConfig(db, watchtest.Probe))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			stopSquat := testlab.Squat(t, a.SocketPath(), reply)
			start := time.Now()
			b := openManager(t, testConfig(db, watchtest.Probe))
			opened := time.Since(start)
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			_, err = b.List(ctx, "", 0)
			took := time.Since(start)
			var se *squatError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), b.SocketPath()) || took > 2*time.Second {
				t.Fatalf("List through a squatted socket: %v after %v (Open %v); want the squatter named within 2 s", err, took, opened)
			}
			t.Logf("squatter detected: Open %v, the call failed after %v: %v", opened.Round(time.Millisecond), took.Round(time.Millisecond), err)
			stopSquat()
			a.Close()
			waitFor(t, 10*time.Second, "the follower owning the database", b.IsOwner)
			if _, err := b.Add(ctxT(t), watch.Spec{Target: "a.test"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A squatter on the socket of a database nobody holds is bypassed: the
// next process owns the database and replaces the socket, and the one
// after follows it.
func TestSquattedSocketUnowned(t *testing.T) {
	db := dbPath(t)
	stopSquat := testlab.Squat(t, socketPath(db), nil)
	start := time.Now()
	a := openManager(t, testConfig(db, watchtest.Probe))
	if !a.IsOwner() || time.Since(start) > 2*time.Second {
		t.Fatalf("role %q after %v", a.Role(), time.Since(start))
	}
	b := openManager(t, testConfig(db, watchtest.Probe))
	if b.Role() != "follower" {
		t.Fatalf("second process: role %q", b.Role())
	}
	if _, err := b.Add(ctxT(t), watch.Spec{Target: "a.test"}); err != nil {
		t.Fatal(err)
	}
	stopSquat()
}

// A peer of another user is refused, naming its user.
func TestPeerOfAnotherUser(t *testing.T) {
	path := socketPath(dbPath(t))
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	(<-accepted).Close()
	if err := checkPeer(c, os.Getuid()); err != nil {
		t.Fatalf("same user refused: %v", err)
	}
	err = checkPeer(c, os.Getuid()+1)
	if _, _, perr := peerCred(c); errors.Is(perr, errNoPeerCred) {
		t.Skipf("no peer credentials here: %v", perr)
	}
	if err == nil || !strings.Contains(err.Error(), "belongs to user") {
		t.Fatalf("another user: %v", err)
	}
}
