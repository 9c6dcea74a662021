package alert

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// newClock is the injected clock at t0: tests move time, never sleep.
func newClock() *watchtest.Clock { return watchtest.NewClock(t0) }

// testOutbox is the outbox of a real watch database. Entries get there
// only as they do in production: inside the commit of a watch's update.
type testOutbox struct {
	*store.Outbox
	db *store.DB
}

func openTestOutbox(t *testing.T, path string) (*store.DB, *testOutbox) {
	t.Helper()
	db, err := store.Open(path, store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, &testOutbox{Outbox: db.Outbox(), db: db}
}

// commit writes a watch's record with fn as its commit hook.
func (o *testOutbox) commit(w watch.Watch, fn func(tx store.OutboxTx) error) error {
	rec := store.Record{ID: w.ID, Target: w.Target, Schedule: "@every 1h", State: w.State}
	_, err := o.db.Apply([]store.Update{{Record: rec, Create: true, InTx: fn}})
	return err
}

// Enqueue queues entries as if a commit hook did.
func (o *testOutbox) Enqueue(entries ...store.OutboxEntry) error {
	return o.commit(watch.Watch{ID: "w_enqueue"}, func(tx store.OutboxTx) error { return tx.Enqueue(nil, entries...) })
}

// testDispatcher is a Dispatcher attached to a test outbox.
type testDispatcher struct {
	*Dispatcher
	t  *testing.T
	ob *testOutbox
}

// commit hands the dispatcher an event as the watcher does: inside
// the commit of the change that caused it.
func (d *testDispatcher) commit(ev event) {
	d.t.Helper()
	c := watch.Change{Watch: ev.Watch, Events: []watch.Event{ev.Event}}
	if err := d.ob.commit(ev.Watch, func(tx store.OutboxTx) error { return d.EnqueueTx(tx, c) }); err != nil {
		d.t.Fatal(err)
	}
}

func newDispatcherFor(t *testing.T, cfg Config, ob *testOutbox, opts Options) (*testDispatcher, error) {
	d, err := NewDispatcher(cfg, opts)
	if err != nil {
		return nil, err
	}
	d.Attach(ob.Outbox)
	return &testDispatcher{Dispatcher: d, t: t, ob: ob}, nil
}

// testLogger sends the dispatcher's log to the test log (shown on failure).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newTestDispatcher(t *testing.T, cfg Config, ob *testOutbox, clock *watchtest.Clock, roots *x509.CertPool) *testDispatcher {
	t.Helper()
	d, err := newDispatcherFor(t, cfg, ob, Options{Now: clock.Now, RootCAs: roots, Timeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func deliverDue(t *testing.T, d *testDispatcher) Stats {
	t.Helper()
	st, err := d.DeliverDue(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func pending(t *testing.T, ob *testOutbox) int {
	t.Helper()
	n, err := ob.Len()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Events as the watcher sends them.

func testWatch(id, state string, status probe.Status, stage string, days int) watch.Watch {
	checked := t0
	return watch.Watch{
		ID:     id,
		Target: probe.TargetInfo{Host: "mcp.example.com", Port: 443, SNI: "mcp.example.com"},
		State:  state,
		LastReport: &probe.Report{
			CheckedAt: checked, Status: status, ExpiryStage: probe.Stage(stage),
			Findings: []probe.Finding{{Code: "expiring_soon", Severity: probe.SeverityCritical, Message: "expires soon"}},
			Leaf: &probe.CertInfo{
				Subject: "CN=mcp.example.com", DaysRemaining: days,
				NotAfter: t0.Add(time.Duration(days) * 24 * time.Hour), SHA256: "ab12cd34",
			},
		},
		LastCheckedAt: &checked,
		CreatedAt:     t0.Add(-time.Hour),
	}
}

// event is one watcher event with the watch it is about, as a Change
// carries them.
type event struct {
	watch.Event
	Watch watch.Watch
}

func downEvent(id string) event {
	w := testWatch(id, watch.StateDown, probe.StatusDown, "none", 40)
	w.ConsecutiveFailures = 3
	return event{watch.Event{Kind: watch.EventStatusChanged, Level: watch.LevelCritical, Message: "mcp.example.com:443 is down: connection refused"}, w}
}

func upEvent(id string) event {
	return event{watch.Event{Kind: watch.EventStatusChanged, Level: watch.LevelInfo, Message: "mcp.example.com:443 is up again"}, testWatch(id, watch.StateUp, probe.StatusOK, "none", 40)}
}

func stageEvent(id, stage string, days int, level string) event {
	return event{watch.Event{Kind: watch.EventStageCrossed, Level: level, Message: "certificate of mcp.example.com:443 expires in " + stage}, testWatch(id, watch.StateUp, probe.StatusCritical, stage, days)}
}

func rotatedEvent(id string) event {
	w := testWatch(id, watch.StateUp, probe.StatusOK, "none", 89)
	w.LastReport.Leaf.SHA256 = "ffee0011"
	return event{watch.Event{Kind: watch.EventRotated, Level: watch.LevelInfo, Message: "certificate of mcp.example.com:443 rotated"}, w}
}

// receiver is a local HTTP endpoint that records every request and answers
// with the status its fail function chooses (200 when nil or 0).
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []recorded
	fail func(n int) int // n: 0-based request number; returns the status
	got  chan recorded   // 2xx requests, for tests that run the real loop
}

type recorded struct {
	header http.Header
	body   []byte
	status int
}

func newReceiver(t *testing.T, tlsServer bool) *receiver {
	r := &receiver{got: make(chan recorded, 100)}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	if tlsServer {
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	status := http.StatusOK
	if r.fail != nil {
		if s := r.fail(len(r.reqs)); s != 0 {
			status = s
		}
	}
	rec := recorded{header: req.Header.Clone(), body: body, status: status}
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	if status < 300 {
		r.got <- rec
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, http.StatusText(status))
}

func (r *receiver) setFail(f func(n int) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = f
}

func (r *receiver) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

// accepted returns the 2xx requests.
func (r *receiver) accepted() []recorded {
	var out []recorded
	for _, x := range r.all() {
		if x.status < 300 {
			out = append(out, x)
		}
	}
	return out
}

func (r *receiver) roots() *x509.CertPool {
	p := x509.NewCertPool()
	if c := r.srv.Certificate(); c != nil {
		p.AddCert(c)
	}
	return p
}

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// smtpServer is a tiny real SMTP server on 127.0.0.1: EHLO, STARTTLS (with a
// certificate made here), AUTH PLAIN, MAIL, RCPT, DATA, QUIT.
type smtpServer struct {
	ln    net.Listener
	tls   *tls.Config
	roots *x509.CertPool
	msgs  chan smtpMessage
	wg    sync.WaitGroup
}

type smtpMessage struct {
	from string
	to   []string
	auth string
	tls  bool
	data string
}

func newSMTPServer(t *testing.T, offerTLS bool) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln, msgs: make(chan smtpMessage, 10)}
	if offerTLS {
		cert, roots := selfSignedLoopback(t)
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.roots = roots
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *smtpServer) handle(c net.Conn) {
	defer func() { c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	reply := func(line string) { _ = tp.PrintfLine("%s", line) }
	reply("220 test.invalid ESMTP")
	var m smtpMessage
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply("250-test.invalid")
			if s.tls != nil && !m.tls {
				reply("250-STARTTLS")
			}
			reply("250 AUTH PLAIN")
		case "STARTTLS":
			reply("220 ready for TLS")
			tc := tls.Server(c, s.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, m.tls = tc, true
			tp = textproto.NewConn(tc)
		case "AUTH":
			m.auth = arg
			reply("235 2.7.0 accepted")
		case "MAIL":
			m.from = arg
			reply("250 ok")
		case "RCPT":
			if strings.Contains(arg, "unknown@") {
				reply("550 5.1.1 no such user")
				continue
			}
			m.to = append(m.to, arg)
			reply("250 ok")
		case "DATA":
			reply("354 go on")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m.data = string(data)
			s.msgs <- m
			reply("250 queued")
		case "QUIT":
			reply("221 bye")
			return
		case "RSET", "NOOP":
			reply("250 ok")
		default:
			reply("502 not implemented")
		}
	}
}

// selfSignedLoopback makes a certificate for 127.0.0.1 that is its own root.
func selfSignedLoopback(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tlswatch test smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// readMessage parses a received mail into headers and a decoded body.
func readMessage(t *testing.T, data string) (textproto.MIMEHeader, string) {
	t.Helper()
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(data)))
	h, err := r.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("mail headers: %v\n%s", err, data)
	}
	body, _ := io.ReadAll(r.R)
	return h, string(body)
}
