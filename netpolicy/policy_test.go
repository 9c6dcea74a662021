package netpolicy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	shared, err := New(Config{DenyPrivate: true, AllowCIDRs: []string{"10.1.0.0/16"}, DenyCIDRs: []string{"203.0.113.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		p       *Policy
		addr    string
		blocked bool
	}{
		{"metadata v4 default", nil, "169.254.169.254", true},
		{"metadata v4 mapped", nil, "::ffff:169.254.169.254", true},
		{"metadata v6", nil, "fd00:ec2::254", true},
		{"link-local v6", nil, "fe80::1", true},
		{"loopback default allowed", nil, "127.0.0.1", false},
		{"private default allowed", nil, "10.0.0.1", false},
		{"public", nil, "198.51.100.7", false},
		{"loopback deny-private", shared, "127.0.0.1", true},
		{"v6 loopback deny-private", shared, "::1", true},
		{"rfc1918 deny-private", shared, "192.168.1.1", true},
		{"ula deny-private", shared, "fd12::1", true},
		{"allow wins over deny-private", shared, "10.1.2.3", false},
		{"deny-cidr", shared, "203.0.113.9", true},
		{"public under deny-private", shared, "198.51.100.7", false},
		{"metadata via NAT64", nil, "64:ff9b::a9fe:a9fe", true},
		{"public via NAT64", nil, "64:ff9b::c633:6407", false},
		{"loopback via NAT64 deny-private", shared, "64:ff9b::7f00:1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Check(netip.MustParseAddr(tt.addr))
			if got := err != nil; got != tt.blocked {
				t.Fatalf("Check(%s) = %v, want blocked=%v", tt.addr, err, tt.blocked)
			}
			if err != nil && !IsBlocked(err) {
				t.Fatalf("error %v is not a *BlockedError", err)
			}
		})
	}
}

func TestNewRejectsBadCIDR(t *testing.T) {
	for _, c := range []Config{{AllowCIDRs: []string{"10.0.0.0/33"}}, {DenyCIDRs: []string{"nonsense"}}} {
		if _, err := New(c); err == nil {
			t.Fatalf("New(%+v) accepted a bad CIDR", c)
		}
	}
}

// The check happens at dial time on the resolved address: a real dial to a
// loopback listener is refused under --deny-private before any packet leaves.
func TestDialerRefusesAtDialTime(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	open, _ := New(Config{})
	c, err := open.Dialer(net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("default policy refused loopback: %v", err)
	}
	c.Close()

	strict, _ := New(Config{DenyPrivate: true})
	_, err = strict.Dialer(net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	var be *BlockedError
	if !errors.As(err, &be) {
		t.Fatalf("deny-private dial error = %v, want *BlockedError", err)
	}
}
