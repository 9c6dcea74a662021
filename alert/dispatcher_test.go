package alert

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"fmt"
	"github.com/tlswatch/tlswatch/watch"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

func webhookChannel(name, url, secret string) Channel {
	return Channel{Name: name, Type: TypeWebhook, URL: url, Secret: secret}
}

// The generic webhook: signed JSON body with the documented fields; the
// receiver verifies the HMAC over the raw body.
func TestWebhookSignedPayload(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	rcv := newReceiver(t, false)
	secret := "topsecret"
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{webhookChannel("hook", rcv.srv.URL+"/tlswatch", secret)}}}, ob, clock, nil)

	d.commit(stageEvent("w_1", "7d", 6, watch.LevelCritical))
	if n := pending(t, ob); n != 1 {
		t.Fatalf("pending = %d before delivery, want 1 (queued in the commit)", n)
	}
	if st := deliverDue(t, d); st.Delivered != 1 {
		t.Fatalf("stats = %+v", st)
	}
	got := rcv.accepted()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests", len(got))
	}
	req := got[0]
	// Receiver-side verification, as a receiver would write it.
	sig := req.header.Get(HeaderSignature)
	if !hmac.Equal([]byte(sig), []byte(Sign([]byte(secret), req.body))) {
		t.Fatalf("signature %q does not verify over the body", sig)
	}
	if Sign([]byte("wrong"), req.body) == sig {
		t.Fatal("signature verifies with the wrong secret")
	}
	if ct := req.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	a := decodeJSON[map[string]any](t, req.body)
	for k, want := range map[string]any{
		"kind": "stage_crossed", "level": "critical", "action": "trigger", "condition": "expiry",
		"dedup_key": "tlswatch/w_1/expiry", "watch_id": "w_1", "target": "mcp.example.com:443",
		"state": "up", "status": "critical", "expiry_stage": "7d", "days_remaining": float64(6),
		"fingerprint": "ab12cd34", "timestamp": "2026-11-26T10:00:00Z",
		"message": "certificate of mcp.example.com:443 expires in 7d",
	} {
		if a[k] != want {
			t.Errorf("body[%q] = %#v, want %#v", k, a[k], want)
		}
	}
	if id, _ := a["id"].(string); id == "" || req.header.Get(HeaderDelivery) != id {
		t.Errorf("delivery header %q does not match body id %q", req.header.Get(HeaderDelivery), id)
	}
	if req.header.Get(HeaderEvent) != "stage_crossed" {
		t.Errorf("%s = %q", HeaderEvent, req.header.Get(HeaderEvent))
	}
	if n := pending(t, ob); n != 0 {
		t.Fatalf("pending after delivery = %d", n)
	}
}

// Slack gets {"text", "blocks"}, with hostile text escaped.
func TestSlackPayload(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	rcv := newReceiver(t, false)
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{{Name: "slack", Type: TypeSlack, URL: rcv.srv.URL + "/services/T/B/x"}}}}, ob, clock, nil)

	ev := downEvent("w_9")
	ev.Message = "down: subject <!channel> <https://evil.example|click> & more"
	d.commit(ev)
	deliverDue(t, d)
	got := rcv.accepted()
	if len(got) != 1 {
		t.Fatalf("slack got %d requests", len(got))
	}
	m := decodeJSON[slackMessage](t, got[0].body)
	if !strings.Contains(m.Text, "CRITICAL: mcp.example.com:443 is down") || !strings.Contains(m.Text, ":red_circle:") {
		t.Errorf("text = %q", m.Text)
	}
	if strings.Contains(m.Text, "<!channel>") || strings.Contains(m.Text, "<https://evil") ||
		!strings.Contains(m.Text, "&lt;!channel&gt;") || !strings.Contains(m.Text, "&amp; more") {
		t.Errorf("text not escaped: %q", m.Text)
	}
	if len(m.Blocks) < 2 || m.Blocks[0].Type != "section" || m.Blocks[len(m.Blocks)-1].Type != "context" {
		t.Fatalf("blocks = %+v", m.Blocks)
	}
	if ctx := m.Blocks[len(m.Blocks)-1].Elements[0].Text; !strings.Contains(ctx, "watch `w_9`") {
		t.Errorf("context = %q", ctx)
	}

	// Recovery reaches Slack too (it was told about the outage).
	d.commit(upEvent("w_9"))
	deliverDue(t, d)
	got = rcv.accepted()
	if len(got) != 2 {
		t.Fatalf("slack got %d requests after recovery", len(got))
	}
	if m := decodeJSON[slackMessage](t, got[1].body); !strings.Contains(m.Text, "RESOLVED: mcp.example.com:443 is back up") {
		t.Errorf("recovery text = %q", m.Text)
	}
}

// PagerDuty: trigger with a dedup_key stable per watch and condition, then a
// resolve with the same key, over HTTPS; min_level does not hold back the
// resolve; notify-only events are not sent.
func TestPagerDutyTriggerThenResolve(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	pd := newReceiver(t, true)
	ch := Channel{Name: "pd", Type: TypePagerDuty, URL: pd.srv.URL + "/v2/enqueue", RoutingKey: "R0UTING", MinLevel: watch.LevelCritical}
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{ch}}}, ob, clock, pd.roots())

	d.commit(downEvent("w_1"))
	d.commit(stageEvent("w_1", "14d", 12, watch.LevelWarning)) // below min_level
	notify := upEvent("w_2")                                   // never down: nothing to resolve
	notify.Level = watch.LevelCritical
	d.commit(notify)
	clock.Advance(time.Minute)
	d.commit(upEvent("w_1"))
	d.commit(downEvent("w_1"))
	for deliverDue(t, d).Delivered > 0 {
	}

	got := pd.accepted()
	if len(got) != 3 {
		t.Fatalf("pagerduty got %d events, want trigger, resolve, trigger", len(got))
	}
	type event struct {
		RoutingKey  string `json:"routing_key"`
		EventAction string `json:"event_action"`
		DedupKey    string `json:"dedup_key"`
		Payload     *struct {
			Summary, Source, Severity, Timestamp string
			CustomDetails                        map[string]any `json:"custom_details"`
		} `json:"payload"`
	}
	trig := decodeJSON[event](t, got[0].body)
	if trig.RoutingKey != "R0UTING" || trig.EventAction != "trigger" || trig.DedupKey != "tlswatch/w_1/down" || trig.Payload == nil {
		t.Fatalf("trigger = %s", got[0].body)
	}
	if trig.Payload.Severity != "critical" || trig.Payload.Source != "mcp.example.com:443" ||
		!strings.HasPrefix(trig.Payload.Summary, "CRITICAL: mcp.example.com:443 is down") || trig.Payload.CustomDetails["watch_id"] != "w_1" {
		t.Fatalf("trigger payload = %s", got[0].body)
	}
	res := decodeJSON[event](t, got[1].body)
	if res.EventAction != "resolve" || res.DedupKey != trig.DedupKey || res.RoutingKey != "R0UTING" {
		t.Fatalf("resolve = %s", got[1].body)
	}
	if again := decodeJSON[event](t, got[2].body); again.EventAction != "trigger" || again.DedupKey != trig.DedupKey {
		t.Fatalf("second outage = %s", got[2].body)
	}
}

// Expiry: trigger per stage (same dedup_key), resolved by the rotation.
func TestPagerDutyExpiryResolvedByRotation(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	pd := newReceiver(t, false)
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{{Name: "pd", Type: TypePagerDuty, URL: pd.srv.URL, RoutingKey: "k"}}}}, ob, clock, nil)

	d.commit(stageEvent("w_1", "30d", 29, watch.LevelInfo)) // below warning: not sent
	d.commit(stageEvent("w_1", "14d", 13, watch.LevelWarning))
	d.commit(stageEvent("w_1", "7d", 6, watch.LevelCritical))
	d.commit(rotatedEvent("w_1"))
	d.commit(rotatedEvent("w_1")) // nothing open any more: not sent
	deliverDue(t, d)

	var actions []string
	for _, r := range pd.accepted() {
		e := decodeJSON[pdEvent](t, r.body)
		if e.DedupKey != "tlswatch/w_1/expiry" {
			t.Errorf("dedup_key = %q", e.DedupKey)
		}
		actions = append(actions, e.EventAction)
	}
	if strings.Join(actions, ",") != "trigger,trigger,resolve" {
		t.Fatalf("actions = %v, want trigger,trigger,resolve", actions)
	}
}

// Email over a real (tiny) SMTP server: STARTTLS, AUTH PLAIN, one message
// with the delivery id as Message-ID; a rejected recipient does not stop the
// others.
func TestEmailOverSMTP(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	srv := newSMTPServer(t, true)
	ch := Channel{
		Name: "mail", Type: TypeEmail, SMTP: srv.ln.Addr().String(),
		From: "tlswatch <tlswatch@example.com>", To: []string{"oncall@example.com", "unknown@example.com"},
		Username: "tlswatch", Password: "pw", RequireTLS: true,
	}
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{ch}}}, ob, clock, srv.roots)

	ev := downEvent("w_7")
	ev.Message = "down\r\nBcc: victim@example.com: naïve"
	d.commit(ev)
	if st := deliverDue(t, d); st.Delivered != 1 {
		t.Fatalf("stats = %+v", st)
	}
	var m smtpMessage
	select {
	case m = <-srv.msgs:
	default:
		t.Fatal("the SMTP server received no message")
	}
	if !m.tls {
		t.Error("message was not sent over STARTTLS")
	}
	if m.from != "FROM:<tlswatch@example.com>" || len(m.to) != 1 || m.to[0] != "TO:<oncall@example.com>" {
		t.Errorf("envelope from=%q to=%q", m.from, m.to)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(m.auth, "PLAIN "))
	if string(raw) != "\x00tlswatch\x00pw" {
		t.Errorf("AUTH = %q", raw)
	}
	h, body := readMessage(t, m.data)
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subject != "[tlswatch] CRITICAL: mcp.example.com:443 is down" {
		t.Errorf("Subject = %q (%v)", subject, err)
	}
	if h.Get("Bcc") != "" {
		t.Error("message text injected a header")
	}
	if id := h.Get(HeaderDelivery); id == "" || h.Get("Message-Id") != "<"+id+"@tlswatch>" {
		t.Errorf("Message-ID %q, delivery %q", h.Get("Message-Id"), id)
	}
	plain, err := readQP(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Target:         mcp.example.com:443", "Watch:          w_7", "naïve"} {
		if !strings.Contains(plain, want) {
			t.Errorf("body lacks %q:\n%s", want, plain)
		}
	}
}

func readQP(s string) (string, error) {
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(s)))
	return string(b), err
}

// Without STARTTLS on offer, require_tls refuses and retries; without
// require_tls the mail goes out in clear.
func TestEmailRequireTLS(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	srv := newSMTPServer(t, false)
	ch := Channel{Name: "strict", Type: TypeEmail, SMTP: srv.ln.Addr().String(), From: "a@example.com", To: []string{"b@example.com"}, RequireTLS: true}
	loose := ch
	loose.Name, loose.RequireTLS = "loose", false
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{ch, loose}}}, ob, clock, nil)
	d.commit(downEvent("w_1"))
	st := deliverDue(t, d)
	if st.Delivered != 1 || st.Retrying != 1 {
		t.Fatalf("stats = %+v, want 1 delivered (loose) and 1 retrying (strict)", st)
	}
	if m := <-srv.msgs; m.tls {
		t.Fatal("server offered no TLS, yet tls")
	}
	p, _ := ob.Pending(0)
	if len(p) != 1 || p[0].Channel != "strict" || !strings.Contains(p[0].LastError, "STARTTLS") {
		t.Fatalf("pending = %+v", p)
	}
}

// A receiver answering 503 for an hour: backoff grows to the cap, nothing is
// lost, and once it is back the alert arrives exactly once. A healthy
// channel beside it is not held up.
func TestReceiverDownForAnHour(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	down := newReceiver(t, false)
	up := newReceiver(t, false)
	backAt := t0.Add(time.Hour)
	down.setFail(func(int) int {
		if clock.Now().Before(backAt) {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{
		webhookChannel("flaky", down.srv.URL, "s"), webhookChannel("healthy", up.srv.URL, "s"),
	}}}, ob, clock, nil)

	d.commit(downEvent("w_1"))
	var attempts []time.Time
	for i := 0; i < 100; i++ {
		before := len(down.all())
		deliverDue(t, d)
		if len(down.all()) > before {
			attempts = append(attempts, clock.Now())
		}
		next, ok, err := ob.NextDue()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if !next.After(clock.Now()) {
			t.Fatalf("NextDue %v is not in the future after a pass at %v", next, clock.Now())
		}
		clock.Set(next)
	}
	if len(up.accepted()) != 1 || len(up.all()) != 1 {
		t.Fatalf("healthy channel got %d requests, want 1", len(up.all()))
	}
	if got := down.accepted(); len(got) != 1 {
		t.Fatalf("flaky channel accepted %d, want exactly 1", len(got))
	}
	last := attempts[len(attempts)-1]
	if last.Before(backAt) || last.After(backAt.Add(DefaultMaxBackoff)) {
		t.Fatalf("delivered at %v, want within max_backoff after %v", last, backAt)
	}
	for i := 1; i < len(attempts); i++ {
		if gap := attempts[i].Sub(attempts[i-1]); gap > DefaultMaxBackoff {
			t.Fatalf("gap %v between attempts %d and %d exceeds max_backoff", gap, i-1, i)
		}
	}
	if attempts[1].Sub(attempts[0]) != DefaultInitialBackoff || attempts[2].Sub(attempts[1]) != 2*DefaultInitialBackoff {
		t.Fatalf("backoff does not start at 1s, 2s: %v", attempts[:3])
	}
	if len(attempts) > 30 {
		t.Fatalf("%d attempts in an hour: backoff is not growing", len(attempts))
	}
	// A day later, nothing more goes out.
	clock.Advance(48 * time.Hour)
	deliverDue(t, d)
	if len(down.accepted()) != 1 || pending(t, ob) != 0 {
		t.Fatalf("after a day: accepted %d, pending %d", len(down.accepted()), pending(t, ob))
	}
}

// A receiver whose listener is closed (connection refused) gets the alert
// once it listens again.
func TestReceiverListenerClosedThenBack(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens: connection refused

	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{webhookChannel("hook", "http://"+addr+"/in", "s")}}}, ob, clock, nil)
	d.commit(downEvent("w_1"))
	if st := deliverDue(t, d); st.Retrying != 1 {
		t.Fatalf("stats with the listener closed = %+v", st)
	}
	p, _ := ob.Pending(0)
	if len(p) != 1 || p[0].Attempts != 1 || p[0].LastError == "" {
		t.Fatalf("pending = %+v", p)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	rcv := &receiver{got: make(chan recorded, 10)}
	srv := &http.Server{Handler: http.HandlerFunc(rcv.serve), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	if st := deliverDue(t, d); st.Delivered != 0 {
		t.Fatal("delivered before the backoff expired")
	}
	clock.Advance(DefaultInitialBackoff)
	if st := deliverDue(t, d); st.Delivered != 1 {
		t.Fatalf("stats after the receiver came back = %+v", st)
	}
	clock.Advance(time.Hour)
	deliverDue(t, d)
	if n := len(rcv.accepted()); n != 1 {
		t.Fatalf("receiver got %d deliveries, want exactly 1", n)
	}
}

// A restart (close the bbolt file, reopen, new Dispatcher) delivers what was
// pending and does not resend what was delivered.
func TestRestartNeitherLosesNorResends(t *testing.T) {
	clock := newClock()
	path := filepath.Join(t.TempDir(), "t.db")
	db, ob := openTestOutbox(t, path)
	a := newReceiver(t, false)
	b := newReceiver(t, false)
	b.setFail(func(int) int { return http.StatusBadGateway })
	cfg := Config{Alerts: Alerts{Channels: []Channel{webhookChannel("a", a.srv.URL, "s"), webhookChannel("b", b.srv.URL, "s")}}}
	d := newTestDispatcher(t, cfg, ob, clock, nil)
	d.commit(downEvent("w_1"))
	if st := deliverDue(t, d); st.Delivered != 1 || st.Retrying != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	b.setFail(nil)
	clock.Advance(time.Minute)
	_, ob2 := openTestOutbox(t, path)
	d2 := newTestDispatcher(t, cfg, ob2, clock, nil)
	for deliverDue(t, d2).Delivered > 0 {
	}
	if n := len(a.all()); n != 1 {
		t.Fatalf("a got %d requests after restart, want 1 (no resend)", n)
	}
	if n := len(b.accepted()); n != 1 {
		t.Fatalf("b accepted %d after restart, want 1", n)
	}
	// The same delivery id on every attempt of b.
	ids := map[string]bool{}
	for _, r := range b.all() {
		ids[r.header.Get(HeaderDelivery)] = true
	}
	if len(ids) != 1 {
		t.Fatalf("b saw delivery ids %v, want one id across retries", ids)
	}
	// The condition marks survived too: recovery reaches both channels.
	d2.commit(upEvent("w_1"))
	deliverDue(t, d2)
	if len(a.accepted()) != 2 || len(b.accepted()) != 2 {
		t.Fatalf("recovery after restart: a %d, b %d", len(a.accepted()), len(b.accepted()))
	}
}

// Run: the real loop with the real clock and tiny backoffs. A receiver that
// fails twice gets the alert once; Run stops cleanly on cancel.
func TestRunDeliversAfterFailures(t *testing.T) {
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	rcv := newReceiver(t, false)
	rcv.setFail(func(n int) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	cfg := Config{Alerts: Alerts{
		Retry:    Retry{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, GiveUpAfter: time.Hour},
		Channels: []Channel{webhookChannel("hook", rcv.srv.URL, "s")},
	}}
	d, err := newDispatcherFor(t, cfg, ob, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	d.commit(downEvent("w_1"))
	select {
	case <-rcv.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
	}
	d.commit(upEvent("w_1"))
	select {
	case r := <-rcv.got:
		if a := decodeJSON[Alert](t, r.body); a.Action != ActionResolve {
			t.Fatalf("second delivery = %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no second delivery within 10s")
	}
	// The receiver has answered; wait for the dispatcher to commit (an
	// earlier cancel would rightly leave the entry queued).
	waitFor(t, func() bool { return pending(t, ob) == 0 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if n := len(rcv.accepted()); n != 2 || len(rcv.all()) != 4 {
		t.Fatalf("requests: %d accepted of %d, want 2 of 4", n, len(rcv.all()))
	}
}

// waitFor polls cond until it holds (10s at most): for the one test that runs
// the real loop, where the outcome is asynchronous by nature.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run stops promptly while a receiver hangs, leaving the entry queued.
func TestRunStopsDuringHangingSend(t *testing.T) {
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	hang := newReceiver(t, false)
	hang.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	d, err := newDispatcherFor(t, Config{Alerts: Alerts{Channels: []Channel{webhookChannel("hook", hang.srv.URL, "")}}}, ob, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	d.commit(downEvent("w_1"))
	<-entered
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop while a send hung")
	}
	p, _ := ob.Pending(0)
	if len(p) != 1 || p[0].Attempts != 0 {
		t.Fatalf("pending = %+v, want the entry kept without a counted failure", p)
	}
}

// A "resolve" never overtakes its "trigger": the channel is FIFO.
func TestChannelOrderKeptAcrossFailures(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	pd := newReceiver(t, false)
	pd.setFail(func(n int) int {
		if n == 0 {
			return http.StatusTooManyRequests
		}
		return 0
	})
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{{Name: "pd", Type: TypePagerDuty, URL: pd.srv.URL, RoutingKey: "k"}}}}, ob, clock, nil)
	d.commit(downEvent("w_1"))
	deliverDue(t, d) // 429
	d.commit(upEvent("w_1"))
	if st := deliverDue(t, d); st.Delivered != 0 {
		t.Fatalf("resolve went out while the trigger was backing off: %+v", st)
	}
	clock.Advance(time.Second)
	if st := deliverDue(t, d); st.Delivered != 2 {
		t.Fatalf("stats = %+v, want trigger and resolve", st)
	}
	got := pd.accepted()
	if decodeJSON[pdEvent](t, got[0].body).EventAction != "trigger" || decodeJSON[pdEvent](t, got[1].body).EventAction != "resolve" {
		t.Fatalf("order: %s then %s", got[0].body, got[1].body)
	}
}

// 4xx (other than 408/429) and redirects are permanent: dropped, not
// retried; the next entry of the channel still goes out.
func TestPermanentFailuresDropped(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusForbidden, http.StatusGone, http.StatusFound} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			clock := newClock()
			_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
			rcv := newReceiver(t, false)
			rcv.setFail(func(n int) int {
				if n == 0 {
					return status
				}
				return 0
			})
			d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{webhookChannel("hook", rcv.srv.URL, "s")}}}, ob, clock, nil)
			d.commit(downEvent("w_1"))
			d.commit(stageEvent("w_2", "7d", 6, watch.LevelCritical))
			st := deliverDue(t, d)
			if st.Dropped != 1 || st.Delivered != 1 || pending(t, ob) != 0 {
				t.Fatalf("stats = %+v, pending %d", st, pending(t, ob))
			}
			clock.Advance(time.Hour)
			deliverDue(t, d)
			if n := len(rcv.all()); n != 2 {
				t.Fatalf("receiver saw %d requests, want 2 (no retry of the dropped one)", n)
			}
		})
	}
}

// An alert still failing after give_up_after is dropped, and older queued
// alerts behind it are dropped without another attempt.
func TestGiveUp(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	rcv := newReceiver(t, false)
	rcv.setFail(func(int) int { return http.StatusInternalServerError })
	cfg := Config{Alerts: Alerts{
		Retry:    Retry{InitialBackoff: time.Minute, MaxBackoff: time.Hour, GiveUpAfter: 2 * time.Hour},
		Channels: []Channel{webhookChannel("hook", rcv.srv.URL, "s")},
	}}
	d := newTestDispatcher(t, cfg, ob, clock, nil)
	d.commit(downEvent("w_1"))
	d.commit(downEvent("w_2"))
	for i := 0; i < 50; i++ {
		deliverDue(t, d)
		next, ok, _ := ob.NextDue()
		if !ok {
			break
		}
		clock.Set(next)
	}
	if pending(t, ob) != 0 {
		t.Fatal("entries left after give_up_after")
	}
	if clock.Now().Sub(t0) < 2*time.Hour || clock.Now().Sub(t0) > 3*time.Hour {
		t.Fatalf("gave up at %v after start", clock.Now().Sub(t0))
	}
	for _, r := range rcv.all() {
		if decodeJSON[Alert](t, r.body).WatchID != "w_1" {
			t.Fatal("the second, equally old alert was attempted after the first gave up")
		}
	}
}

// Entries of a channel that left the config are dropped, not stuck.
func TestUnknownChannelDropped(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	if err := ob.Enqueue(store.OutboxEntry{Channel: "gone", Payload: []byte(`{}`), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t, false)
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{webhookChannel("hook", rcv.srv.URL, "")}}}, ob, clock, nil)
	if st := deliverDue(t, d); st.Dropped != 1 || pending(t, ob) != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// min_level per channel; recoveries follow what each channel was told.
func TestAdmission(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	crit := newReceiver(t, false)
	info := newReceiver(t, false)
	d := newTestDispatcher(t, Config{Alerts: Alerts{MinLevel: watch.LevelWarning, Channels: []Channel{
		webhookChannel("crit", crit.srv.URL, ""), webhookChannel("info", info.srv.URL, ""),
	}}}, ob, clock, nil)
	d.cfg.Alerts.Channels[0].MinLevel = watch.LevelCritical
	d.cfg.Alerts.Channels[1].MinLevel = watch.LevelInfo

	d.commit(stageEvent("w_1", "14d", 13, watch.LevelWarning)) // info only
	d.commit(upEvent("w_1"))                                   // info only, as a notify (never down)
	d.commit(rotatedEvent("w_1"))                              // info: resolve (told about expiry)
	d.commit(downEvent("w_2"))                                 // both
	d.commit(upEvent("w_2"))                                   // both: resolve
	deliverDue(t, d)

	actions := func(r *receiver) string {
		var s []string
		for _, x := range r.accepted() {
			a := decodeJSON[Alert](t, x.body)
			s = append(s, a.WatchID+":"+a.Kind+":"+a.Action)
		}
		return strings.Join(s, " ")
	}
	if got, want := actions(crit), "w_2:status_changed:trigger w_2:status_changed:resolve"; got != want {
		t.Errorf("crit channel: %s\nwant %s", got, want)
	}
	if got, want := actions(info), "w_1:stage_crossed:trigger w_1:status_changed:notify w_1:rotated:resolve w_2:status_changed:trigger w_2:status_changed:resolve"; got != want {
		t.Errorf("info channel: %s\nwant %s", got, want)
	}
	// Adding or removing a watch is not an alert.
	for _, kind := range []string{watch.EventWatchAdded, watch.EventWatchRemoved} {
		d.commit(event{watch.Event{Kind: kind, Level: watch.LevelCritical, Message: kind}, testWatch("w_3", watch.StateUp, probe.StatusOK, "none", 40)})
	}
	if pending(t, ob) != 0 {
		t.Fatal("adding or removing a watch queued an alert")
	}
}

type panicSender struct{}

func (panicSender) send(context.Context, *Alert) error { panic("boom") }

// A panicking sender is contained: the entry backs off like a failure and
// the other channels are served.
func TestSenderPanicContained(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	rcv := newReceiver(t, false)
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{webhookChannel("bad", rcv.srv.URL, ""), webhookChannel("good", rcv.srv.URL, "")}}}, ob, clock, nil)
	d.channels["bad"].sender = panicSender{}
	d.commit(downEvent("w_1"))
	st := deliverDue(t, d)
	if st.Delivered != 1 || st.Retrying != 1 {
		t.Fatalf("stats = %+v", st)
	}
	p, _ := ob.Pending(0)
	if len(p) != 1 || !strings.Contains(p[0].LastError, "panic") {
		t.Fatalf("pending = %+v", p)
	}
}

// Errors logged and stored never carry a webhook URL's secret path.
func TestErrorsRedactURL(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{{Name: "slack", Type: TypeSlack, URL: "http://" + addr + "/services/T1/B2/SECRETTOKEN"}}}}, ob, clock, nil)
	d.commit(downEvent("w_1"))
	deliverDue(t, d)
	p, _ := ob.Pending(0)
	if len(p) != 1 || strings.Contains(p[0].LastError, "SECRETTOKEN") || !strings.Contains(p[0].LastError, addr) {
		t.Fatalf("last error = %q", p[0].LastError)
	}
}

// Receivers are dialled through the operator's outbound policy, like
// probes: a blocked address is a permanent failure, not a retry loop.
func TestOutboundPolicyApplies(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	rcv := newReceiver(t, false)
	srv := newSMTPServer(t, false)
	pol, err := netpolicy.New(netpolicy.Config{DenyPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDispatcherFor(t, Config{Alerts: Alerts{Channels: []Channel{
		webhookChannel("hook", rcv.srv.URL, "s"),
		{Name: "mail", Type: TypeEmail, SMTP: srv.ln.Addr().String(), From: "a@example.com", To: []string{"b@example.com"}},
	}}}, ob, Options{Now: clock.Now, DialContext: pol.Dialer(net.Dialer{Timeout: time.Second}).DialContext, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	d.commit(downEvent("w_1"))
	if st := deliverDue(t, d); st.Dropped != 2 || st.Delivered != 0 {
		t.Fatalf("stats = %+v, want both dropped by policy", st)
	}
	if len(rcv.all()) != 0 {
		t.Fatal("the blocked receiver was reached")
	}
}

func TestChannelStringHidesSecrets(t *testing.T) {
	cfg := Config{Alerts: Alerts{Channels: []Channel{
		{Name: "s", Type: TypeSlack, URL: "https://hooks.slack.com/services/T1/B2/SECRETTOKEN"},
		{Name: "p", Type: TypePagerDuty, RoutingKey: "SECRETKEY"},
		{Name: "m", Type: TypeEmail, SMTP: "smtp.example.com:587", Username: "u", Password: "SECRETPW"},
	}}}
	if s := fmt.Sprintf("%v %+v", cfg, cfg); strings.Contains(s, "SECRET") {
		t.Fatalf("secret printed: %s", s)
	}
}

func TestWebhookWithoutSecretIsUnsigned(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	rcv := newReceiver(t, false)
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{webhookChannel("hook", rcv.srv.URL, "")}}}, ob, clock, nil)
	d.commit(downEvent("w_1"))
	deliverDue(t, d)
	got := rcv.accepted()
	if len(got) != 1 || got[0].header.Get(HeaderSignature) != "" || got[0].header.Get(HeaderDelivery) == "" {
		t.Fatalf("requests = %+v", got)
	}
}

func TestBackoff(t *testing.T) {
	r := Retry{InitialBackoff: time.Second, MaxBackoff: 5 * time.Minute}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := backoff(r, i+1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := backoff(r, 100); got != 5*time.Minute {
		t.Errorf("backoff(100) = %v", got)
	}
	if got := parseRetryAfter("120", t0); got != 2*time.Minute {
		t.Errorf("Retry-After 120 = %v", got)
	}
	if got := parseRetryAfter(t0.Add(time.Minute).Format(http.TimeFormat), t0); got != time.Minute {
		t.Errorf("Retry-After date = %v", got)
	}
}

func TestNewDispatcherValidates(t *testing.T) {
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	_, err := newDispatcherFor(t, Config{Alerts: Alerts{Channels: []Channel{{Name: "x", Type: TypeSlack, URL: "file:///etc/passwd"}}}}, ob, Options{})
	if err == nil || !strings.Contains(err.Error(), "alerts.channels[0].url: must be an http(s) URL") {
		t.Fatalf("err = %v", err)
	}
	// With no channels, events are ignored.
	d, err := newDispatcherFor(t, Config{}, ob, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.commit(downEvent("w_1"))
	if pending(t, ob) != 0 {
		t.Fatal("queued without channels")
	}
}

// A changed MCP tool list reaches the channels as a notification that
// names what changed (bounded: the names come from the server), with its
// own Slack headline; PagerDuty does not page for it.
func TestToolsChangedAlert(t *testing.T) {
	clock := newClock()
	_, ob := openTestOutbox(t, filepath.Join(t.TempDir(), "t.db"))
	hook, slack, pd := newReceiver(t, false), newReceiver(t, false), newReceiver(t, false)
	d := newTestDispatcher(t, Config{Alerts: Alerts{Channels: []Channel{
		webhookChannel("hook", hook.srv.URL, ""),
		{Name: "slack", Type: TypeSlack, URL: slack.srv.URL + "/services/T/B/x"},
		{Name: "pd", Type: TypePagerDuty, URL: pd.srv.URL, RoutingKey: "k"},
	}}}, ob, clock, nil)
	var added []string
	for i := range maxToolNames + 10 {
		added = append(added, fmt.Sprintf("tool_%02d", i))
	}
	added[0] = strings.Repeat("x", 500)
	change := &probe.ToolsChange{Added: added, Removed: []string{"fetch"}}
	d.commit(event{watch.Event{Kind: watch.EventToolsChanged, Level: watch.LevelWarning, Tools: change,
		Message: "mcp.example.com:443: MCP tools changed (2 -> 61 tools): added ...; removed fetch"},
		testWatch("w_1", watch.StateUp, probe.StatusWarning, "none", 40)})
	deliverDue(t, d)

	got := hook.accepted()
	if len(got) != 1 {
		t.Fatalf("webhook got %d requests", len(got))
	}
	a := decodeJSON[Alert](t, got[0].body)
	if a.Kind != watch.EventToolsChanged || a.Action != ActionNotify || a.ToolsChanged == nil ||
		len(a.ToolsChanged.Added) != maxToolNames || len(a.ToolsChanged.Added[0]) > 210 || fmt.Sprint(a.ToolsChanged.Removed) != "[fetch]" {
		t.Errorf("webhook alert %+v", a)
	}
	if s := slack.accepted(); len(s) != 1 || !strings.Contains(decodeJSON[slackMessage](t, s[0].body).Text, "WARNING: mcp.example.com:443 MCP tools changed") {
		t.Errorf("slack: %d requests", len(s))
	}
	if n := len(pd.accepted()); n != 0 {
		t.Errorf("PagerDuty paged %d times for a tool change", n)
	}
}
