package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// serveStartTLS accepts connections on 127.0.0.1, runs the plain-text part
// of a protocol with dialogue, then (if it returns true) the TLS handshake.
func serveStartTLS(t *testing.T, cfg *tls.Config, dialogue func(c net.Conn, r *bufio.Reader) bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Cleanup closes the listener and every connection, then waits for the
	// handlers: no goroutine outlives the test (goleak, main_test.go).
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				// Unbuffered reads: the client's ClientHello must stay in
				// the socket for tls.Server.
				r := bufio.NewReaderSize(oneByteReader{c}, 16)
				if !dialogue(c, r) {
					return
				}
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					io.Copy(io.Discard, tc)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// oneByteReader makes bufio read one byte at a time, so nothing past a line
// is consumed.
type oneByteReader struct{ c net.Conn }

func (o oneByteReader) Read(p []byte) (int, error) { return o.c.Read(p[:1]) }

func readLine(r *bufio.Reader) string {
	l, _ := r.ReadString('\n')
	return strings.TrimRight(l, "\r\n")
}

// smtpServer is a tiny SMTP server: greeting, EHLO with STARTTLS (unless
// offer is false), STARTTLS.
func smtpServer(offer bool) func(c net.Conn, r *bufio.Reader) bool {
	return func(c net.Conn, r *bufio.Reader) bool {
		io.WriteString(c, "220-mail.tlswatch.test ESMTP lab\r\n220 ready\r\n")
		for {
			l := readLine(r)
			switch {
			case strings.HasPrefix(strings.ToUpper(l), "EHLO"):
				io.WriteString(c, "250-mail.tlswatch.test\r\n250-PIPELINING\r\n")
				if offer {
					io.WriteString(c, "250-STARTTLS\r\n")
				}
				io.WriteString(c, "250 8BITMIME\r\n")
			case strings.ToUpper(l) == "STARTTLS" && offer:
				io.WriteString(c, "220 go ahead\r\n")
				return true
			case l == "":
				return false
			default:
				io.WriteString(c, "502 no\r\n")
			}
		}
	}
}

func startTLSHandshake(t *testing.T, addr, proto string) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := startTLS(ctx, c, proto, testlab.DefaultHost); err != nil {
		return tls.ConnectionState{}, err
	}
	tc := tls.Client(c, &tls.Config{ServerName: testlab.DefaultHost, InsecureSkipVerify: true})
	if err := tc.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, err
	}
	return tc.ConnectionState(), nil
}

func TestStartTLSSMTP(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{})
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	addr := serveStartTLS(t, cfg, smtpServer(true))
	cs, err := startTLSHandshake(t, addr, "smtp")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Fatal("wrong certificate after STARTTLS")
	}

	// The Report names the scheme: smtp://host:port is not host:port.
	tg, err := ParseTarget("smtp://"+testlab.DefaultHost+":"+addr[strings.LastIndexByte(addr, ':')+1:], "127.0.0.1", "", 5000)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), tg, Options{Now: pki.Now, Roots: pki.Roots()})
	if err != nil || r.Status != StatusOK || r.Target.Scheme != "smtp" || r.Target.String() != "smtp://"+testlab.DefaultHost+":"+strconv.Itoa(tg.Port) {
		t.Errorf("status %s target %+v (%s) err %v findings %v", r.Status, r.Target, r.Target.String(), err, r.Findings)
	}

	// A server that does not offer it: a typed, NotOffered error.
	addr = serveStartTLS(t, cfg, smtpServer(false))
	_, err = startTLSHandshake(t, addr, "submission")
	var se *startTLSError
	if !errors.As(err, &se) || !se.NotOffered || se.Proto != protoSMTP {
		t.Fatalf("err %v, want NotOffered startTLSError", err)
	}
}

func TestStartTLSProtocols(t *testing.T) {
	pki := testlab.NewPKI(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}}
	dialogues := map[string]func(c net.Conn, r *bufio.Reader) bool{
		"imap": func(c net.Conn, r *bufio.Reader) bool {
			io.WriteString(c, "* OK IMAP4rev1 ready\r\n")
			if readLine(r) != "a1 STARTTLS" {
				return false
			}
			io.WriteString(c, "a1 OK Begin TLS negotiation now\r\n")
			return true
		},
		"pop3": func(c net.Conn, r *bufio.Reader) bool {
			io.WriteString(c, "+OK POP3 ready\r\n")
			if readLine(r) != "STLS" {
				return false
			}
			io.WriteString(c, "+OK Begin TLS\r\n")
			return true
		},
		"ftp": func(c net.Conn, r *bufio.Reader) bool {
			io.WriteString(c, "220 FTP ready\r\n")
			if readLine(r) != "AUTH TLS" {
				return false
			}
			io.WriteString(c, "234 AUTH TLS OK\r\n")
			return true
		},
		"postgres": func(c net.Conn, r *bufio.Reader) bool {
			b := make([]byte, 8)
			if _, err := io.ReadFull(r, b); err != nil || string(b) != string(postgresSSLRequest) {
				return false
			}
			c.Write([]byte("S"))
			return true
		},
		"ldap": func(c net.Conn, r *bufio.Reader) bool {
			b := make([]byte, len(ldapStartTLSRequest))
			if _, err := io.ReadFull(r, b); err != nil || string(b) != string(ldapStartTLSRequest) {
				return false
			}
			// { id 1, extendedResp { resultCode success, matchedDN "", diagnostic "" } }
			c.Write([]byte{0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00})
			return true
		},
		"xmpp": func(c net.Conn, r *bufio.Reader) bool {
			var got strings.Builder
			for !strings.HasSuffix(got.String(), "version='1.0'>") {
				b, err := r.ReadByte()
				if err != nil {
					return false
				}
				got.WriteByte(b)
			}
			io.WriteString(c, "<?xml version='1.0'?><stream:stream from='tlswatch.test' id='x' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"+
				"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>")
			want := "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
			b := make([]byte, len(want))
			if _, err := io.ReadFull(r, b); err != nil || string(b) != want {
				return false
			}
			io.WriteString(c, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
			return true
		},
	}
	for proto, d := range dialogues {
		t.Run(proto, func(t *testing.T) {
			addr := serveStartTLS(t, cfg, d)
			cs, err := startTLSHandshake(t, addr, proto)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs.PeerCertificates) == 0 {
				t.Fatal("no certificate")
			}
		})
	}
	// Postgres refusing SSL.
	addr := serveStartTLS(t, cfg, func(c net.Conn, r *bufio.Reader) bool {
		io.ReadFull(r, make([]byte, 8))
		c.Write([]byte("N"))
		return false
	})
	_, err := startTLSHandshake(t, addr, "postgresql")
	var se *startTLSError
	if !errors.As(err, &se) || !se.NotOffered {
		t.Fatalf("err %v", err)
	}
}

// A silent server and a flooding one cannot hold startTLS past its deadline
// or its size bounds.
func TestStartTLSBounded(t *testing.T) {
	silent := serveStartTLS(t, nil, func(c net.Conn, r *bufio.Reader) bool {
		io.Copy(io.Discard, c) // says nothing until the connection closes
		return false
	})
	flood := serveStartTLS(t, nil, func(c net.Conn, r *bufio.Reader) bool {
		io.WriteString(c, "220-"+strings.Repeat("x", 100000)+"\r\n")
		return false
	})
	for _, addr := range []string{silent, flood} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err = startTLS(ctx, c, "smtp", "x")
		cancel()
		c.Close()
		if err == nil || time.Since(start) > 2*time.Second {
			t.Errorf("%s: err %v after %v", addr, err, time.Since(start))
		}
	}
	if err := startTLS(context.Background(), nil, "gopher", ""); !errors.Is(err, errUnknownStartTLS) {
		t.Errorf("unknown protocol: %v", err)
	}
}

func TestStartTLSHint(t *testing.T) {
	if h := startTLSHint("mail.example.com", 587); !strings.Contains(h, "smtp://mail.example.com:587") {
		t.Errorf("hint %q", h)
	}
	if startTLSHint("x", 443) != "" {
		t.Error("hint for 443")
	}
}
