package cluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

func TestParseEndpoints(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "127.0.0.1:2379", want: []string{"127.0.0.1:2379"}},
		{in: "http://a:2379, https://b:2379/", want: []string{"http://a:2379", "https://b:2379"}},
		{in: "http://[::1]:2379", want: []string{"http://[::1]:2379"}},
		{in: "", wantErr: "no endpoint"},
		{in: "a", wantErr: "want host:port"},
		{in: "ftp://a:21", wantErr: "scheme must be http or https"},
		{in: "http://a:2379/v3", wantErr: "no path"},
		{in: "a:0", wantErr: "out of range"},
		{in: ":2379", wantErr: "empty host"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEndpoints(tc.in)
			if tc.wantErr != "" {
				var fe *probe.FieldError
				if !errors.As(err, &fe) || fe.Field != "--etcd" || !strings.Contains(fe.Reason, tc.wantErr) {
					t.Fatalf("error %v, want a --etcd field error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{EnvEndpoints: "a:1,b:2", EnvUser: "u", EnvPassword: "p"}
	o, err := ClientOptions{}.FromEnv(func(k string) string { return env[k] })
	if err != nil || !reflect.DeepEqual(o.Endpoints, []string{"a:1", "b:2"}) || o.Username != "u" || o.Password != "p" {
		t.Fatalf("FromEnv = %+v, %v", o, err)
	}
	// Flags win over the environment.
	o, _ = ClientOptions{Endpoints: []string{"c:3"}, Username: "flag"}.FromEnv(func(k string) string { return env[k] })
	if !reflect.DeepEqual(o.Endpoints, []string{"c:3"}) || o.Username != "flag" {
		t.Fatalf("flags overridden by env: %+v", o)
	}
	env[EnvEndpoints] = "nonsense"
	var fe *probe.FieldError
	if _, err := (ClientOptions{}).FromEnv(func(k string) string { return env[k] }); !errors.As(err, &fe) || fe.Field != EnvEndpoints {
		t.Fatalf("bad %s: %v, want a field error naming it", EnvEndpoints, err)
	}
}

func TestKeyspaceAndNodeNames(t *testing.T) {
	for _, tc := range []struct{ prefix, wantErr string }{
		{"", ""}, {"/tlswatch/", ""}, {"/team-a/tlswatch/", ""},
		{"tlswatch/", "must start and end with /"}, {"/tlswatch", "must start and end with /"},
		{"/", "must start and end with /"}, {"/a\n/", "control characters"},
	} {
		_, err := NewKeyspace(tc.prefix)
		var fe *probe.FieldError
		if (tc.wantErr == "") != (err == nil) || (err != nil && (!errors.As(err, &fe) || fe.Field != "--etcd-prefix" || !strings.Contains(fe.Reason, tc.wantErr))) {
			t.Errorf("NewKeyspace(%q) = %v, want error %q", tc.prefix, err, tc.wantErr)
		}
	}
	for _, tc := range []struct{ name, wantErr string }{
		{"node-1", ""}, {"", "empty"}, {"a/b", "slash"}, {"a b", "space"},
		{"a\x00", "unprintable"}, {strings.Repeat("n", 65), "longer than 64"},
	} {
		err := CheckNode(tc.name)
		var fe *probe.FieldError
		if (tc.wantErr == "") != (err == nil) || (err != nil && (!errors.As(err, &fe) || fe.Field != "--node" || !strings.Contains(fe.Reason, tc.wantErr))) {
			t.Errorf("CheckNode(%q) = %v, want error %q", tc.name, err, tc.wantErr)
		}
	}
	k, _ := NewKeyspace("")
	if got := k.Shard(7); got != "/tlswatch/shards/0007" {
		t.Errorf("Shard(7) = %q", got)
	}
	if !strings.HasPrefix(k.Alert("w_1", "ab"), k.Alerts("w_1")) || !strings.HasPrefix(k.Segment("w_1", 1), k.History("w_1")) {
		t.Error("per-watch keys must sit under their directory, for range reads and deletes")
	}
}

// Rendezvous hashing: shards spread evenly, and a member leaving moves only
// its own shards.
func TestRendezvous(t *testing.T) {
	members := []string{"node-1", "node-2", "node-3"}
	count := map[string]int{}
	before := make([]string, DefaultShards)
	for sh := range before {
		before[sh] = ownerOf(sh, members)
		count[before[sh]]++
	}
	for _, m := range members {
		if c := count[m]; c < DefaultShards/5 || c > DefaultShards/2 {
			t.Errorf("%s owns %d of %d shards: %v", m, c, DefaultShards, count)
		}
	}
	for sh := range before {
		after := ownerOf(sh, members[:2])
		if before[sh] != "node-3" && after != before[sh] {
			t.Errorf("shard %d moved from %s to %s when node-3 left", sh, before[sh], after)
		}
	}
	if ownerOf(0, nil) != "" {
		t.Error("no members, no owner")
	}
	if s := ShardOf("w_3f9a", DefaultShards); s != ShardOf("w_3f9a", DefaultShards) || s < 0 || s >= DefaultShards {
		t.Errorf("ShardOf unstable or out of range: %d", s)
	}
}

func TestDial(t *testing.T) {
	s := etcdlab.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	root := s.Client(t)
	// Turn authentication on, as an operator would.
	for _, step := range []func() error{
		func() error { _, err := root.RoleAdd(ctx, "root"); return err },
		func() error { _, err := root.UserAdd(ctx, "root", "s3cret"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("enable auth: %v", err)
		}
	}
	dead := deadEndpoint(t)
	for _, tc := range []struct {
		name    string
		o       ClientOptions
		wantErr string
	}{
		{"credentials", ClientOptions{Endpoints: []string{s.Endpoint}, Username: "root", Password: "s3cret"}, ""},
		{"wrong password", ClientOptions{Endpoints: []string{s.Endpoint}, Username: "root", Password: "nope"}, "authentication failed"},
		{"no credentials", ClientOptions{Endpoints: []string{s.Endpoint}}, "user name is empty"},
		{"user without password", ClientOptions{Endpoints: []string{s.Endpoint}, Username: "root"}, "go together"},
		{"nobody listening", ClientOptions{Endpoints: []string{dead}, DialTimeout: time.Second}, "etcd " + dead},
		{"no endpoint", ClientOptions{}, "no endpoint"},
		{"cert without key", ClientOptions{Endpoints: []string{s.Endpoint}, CertFile: "c.pem"}, "--etcd-key"},
		{"unreadable CA", ClientOptions{Endpoints: []string{s.Endpoint}, CAFile: "/nonexistent.pem"}, "--etcd-ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, err := Dial(ctx, tc.o)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				cli.Close()
				return
			}
			if err == nil {
				cli.Close()
				t.Fatalf("Dial succeeded, want an error with %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Dial: %v, want %q in it", err, tc.wantErr)
			}
		})
	}
}

// deadEndpoint is a loopback address where nothing listens.
func deadEndpoint(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TLS as etcd's clients do it: the server's CA, and a client certificate
// that the server requires.
func TestDialTLS(t *testing.T) {
	pki := testlab.NewPKI(t)
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pair := func(name string, o testlab.LeafOpts) (cert, key string) {
		c := pki.Leaf(o)
		der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", testlab.ChainPEM(c)),
			write(name+"-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	}
	ca := write("ca.pem", pki.Root.PEM())
	srvCert, srvKey := pair("server", testlab.LeafOpts{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	cliCert, cliKey := pair("client", testlab.LeafOpts{DNSNames: []string{"node-1"}, ClientAuth: true})
	s := etcdlab.StartTLS(t, etcdlab.TLSFiles{CA: ca, Cert: srvCert, Key: srvKey, ClientCert: cliCert, ClientKey: cliKey})

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, tc := range []struct {
		name string
		o    ClientOptions
		ok   bool
	}{
		{"CA and client certificate", ClientOptions{CAFile: ca, CertFile: cliCert, KeyFile: cliKey}, true},
		{"no client certificate", ClientOptions{CAFile: ca}, false},
		{"server not trusted", ClientOptions{CertFile: cliCert, KeyFile: cliKey}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Endpoints, tc.o.DialTimeout = []string{s.Endpoint}, 2*time.Second
			cli, err := Dial(ctx, tc.o)
			if err == nil {
				cli.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("Dial: %v, want success %v", err, tc.ok)
			}
		})
	}
}
