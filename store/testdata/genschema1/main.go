//go:build ignore

// genschema1 writes store/testdata/schema1.db.gz: a database in the format
// of schema 1 (JSON Report per probe in "history" and "transitions"), made
// by the store code of that time so that the migration is tested on a file
// the old code really wrote. It must run against commit c6bcee9:
//
//	git archive c6bcee9 | tar -x -C /tmp/tlswatch-c6bcee9
//	cp store/testdata/genschema1/main.go /tmp/tlswatch-c6bcee9/genschema1.go
//	(cd /tmp/tlswatch-c6bcee9 && go run genschema1.go /tmp/schema1.db)
//	gzip -9 -c /tmp/schema1.db > store/testdata/schema1.db.gz
//
// The watches cover what the migration must keep: long history beyond the
// 500 kept, transitions older than the history window, alert state for
// several certificates, the down and expiry indexes, STARTTLS and mTLS
// fields, a watch with no probe yet, and pending outbox entries with marks.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

var t0 = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)

func report(host, fp string, at, notAfter time.Time, status probe.Status, hs float64, codes ...string) *probe.Report {
	days := probe.DaysRemaining(notAfter, at)
	r := &probe.Report{
		Target:    probe.TargetInfo{Host: host, Port: 443, SNI: host, IP: "192.0.2.10"},
		CheckedAt: at, Status: status, Reachable: status != probe.StatusDown, Trusted: status != probe.StatusDown,
		ExpiryStage: probe.ExpiryStage(notAfter, at, []int{30, 14, 7, 1}), Findings: []probe.Finding{},
		Timing: probe.Timing{DNS: 0.4, Connect: 1.1, Handshake: hs, Total: 1.5 + hs},
	}
	if status != probe.StatusDown || len(codes) == 0 {
		r.TLS = &probe.TLSInfo{Version: "TLS 1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", ALPN: "h2"}
		r.Leaf = &probe.CertInfo{Subject: "CN=" + host, Issuer: "CN=Lab Intermediate", SANs: []string{host},
			NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter, DaysRemaining: days,
			Serial: "01" + fp[:6], SHA256: fp, Key: "ECDSA P-256", SignatureAlgorithm: "ECDSA-SHA256"}
		r.Chain = &probe.ChainInfo{Served: 2, Complete: true, VerifiedPath: []string{"CN=" + host, "CN=Lab Intermediate", "CN=Lab Root"}}
	}
	for _, c := range codes {
		r.Findings = append(r.Findings, probe.Finding{Code: c, Severity: probe.SeverityCritical, Message: fmt.Sprintf("%s (%d days left)", c, days)})
	}
	return r
}

func rec(id, host string) store.Record {
	return store.Record{ID: id, Target: probe.TargetInfo{Host: host, Port: 443}, Schedule: "@every 1h",
		Thresholds: []int{30, 14, 7, 1}, FailureThreshold: 3, CreatedAt: t0, UpdatedAt: t0, State: "pending"}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run genschema1.go OUT.db")
		os.Exit(3)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(path string) error {
	os.Remove(path)
	db, err := store.Open(path, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	apply := func(ups ...store.Update) {
		if err == nil {
			_, err = db.Apply(ups)
		}
	}
	fpA1, fpA2 := "a1"+fmt.Sprintf("%062x", 1), "a2"+fmt.Sprintf("%062x", 2)

	// w_a: hourly for 520 hours (the oldest 20 pruned), one rotation, alerts
	// for both certificates.
	a := rec("w_a", "a.example")
	apply(store.Update{Record: a, Create: true})
	for i := 0; i < 520; i++ {
		at := t0.Add(time.Duration(i)*time.Hour + time.Duration(i%7)*time.Second)
		fp, na := fpA1, t0.Add(25*24*time.Hour)
		if i >= 400 {
			fp, na = fpA2, t0.Add(110*24*time.Hour)
		}
		rep := report("a.example", fp, at, na, "ok", 8+float64(i%5))
		if probe.DaysRemaining(na, at) <= 14 {
			rep.Status = probe.StatusWarning
			rep.Findings = []probe.Finding{{Code: "expiring_soon", Severity: probe.SeverityWarning, Message: "expires soon"}}
		}
		a.State, a.LastCheckedAt, a.LastStatus, a.NotAfter, a.Fingerprint = "up", at, string(rep.Status), na, fp
		up := store.Update{Record: a, Report: rep, Transition: i == 0 || i == 400 || i == 264}
		switch i {
		case 120:
			a.FiredDays = 30
			up.Record = a
			up.Alert = &store.Alert{Fingerprint: fpA1, NotAfter: na, FirstSeen: t0, FiredDays: 30, Stages: []string{"30d"}}
		case 264:
			a.FiredDays = 14
			up.Record = a
			up.Alert = &store.Alert{Fingerprint: fpA1, NotAfter: na, FirstSeen: t0, FiredDays: 14, Stages: []string{"30d", "14d"}}
		case 400:
			a.FiredDays = 0
			up.Record = a
			up.Alert = &store.Alert{Fingerprint: fpA2, NotAfter: na, FirstSeen: at, Stages: []string{}}
		}
		apply(up)
	}

	// w_b: flapping, down at the end (the down index).
	b := rec("w_b", "b.example")
	b.Schedule = "@every 5m"
	apply(store.Update{Record: b, Create: true})
	fails := 0
	for i := 0; i < 60; i++ {
		at := t0.Add(time.Duration(i) * 5 * time.Minute)
		down := (i/7)%2 == 1 || i >= 55
		var rep *probe.Report
		if down {
			fails++
			rep = report("b.example", fpA1, at, t0.Add(80*24*time.Hour), "down", 0, "connection_refused")
		} else {
			fails = 0
			rep = report("b.example", "b1"+fmt.Sprintf("%062x", 3), at, t0.Add(80*24*time.Hour), "ok", 30)
		}
		old := b.State
		switch {
		case fails >= 3:
			b.State = "down"
		case fails == 0:
			b.State = "up"
		}
		b.ConsecutiveFailures, b.LastCheckedAt, b.LastStatus = fails, at, string(rep.Status)
		apply(store.Update{Record: b, Report: rep, Transition: old != b.State})
	}

	// w_c: STARTTLS with a client certificate, expired, stage fired.
	c := rec("w_c", "mail.example")
	c.Target.Port, c.Scheme, c.ClientCert, c.TimeoutMS = 587, "smtp", "client.pem", 3000
	c.Target.SNI, c.Target.IP = "smtp.example", "192.0.2.25"
	apply(store.Update{Record: c, Create: true})
	for i := 0; i < 3; i++ {
		at := t0.Add(time.Duration(i) * 24 * time.Hour)
		na := t0.Add(-time.Hour)
		rep := report("mail.example", "c1"+fmt.Sprintf("%062x", 4), at, na, "critical", 12, "expired")
		c.State, c.LastCheckedAt, c.LastStatus, c.NotAfter, c.Fingerprint, c.FiredDays = "up", at, "critical", na, rep.Leaf.SHA256, -1
		up := store.Update{Record: c, Report: rep, Transition: i == 0}
		if i == 0 {
			up.Alert = &store.Alert{Fingerprint: rep.Leaf.SHA256, NotAfter: na, FirstSeen: at, FiredDays: -1, Stages: []string{"expired"}}
		}
		apply(up)
	}

	// w_d: added, never probed.
	apply(store.Update{Record: rec("w_d", "d.example"), Create: true})

	// w_e: a transition far older than its 500 history entries.
	e := rec("w_e", "e.example")
	e.Schedule = "@every 1m"
	apply(store.Update{Record: e, Create: true})
	for i := 0; i < 505; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		if i > 0 {
			at = at.Add(30 * 24 * time.Hour)
		}
		rep := report("e.example", "e1"+fmt.Sprintf("%062x", 5), at, t0.Add(300*24*time.Hour), "ok", 4)
		e.State, e.LastCheckedAt, e.LastStatus = "up", at, "ok"
		apply(store.Update{Record: e, Report: rep, Transition: i == 0})
	}
	if err != nil {
		return err
	}

	// Pending alert deliveries with a mark.
	ob, err := store.NewOutbox(db.Bolt())
	if err != nil {
		return err
	}
	_, err = ob.EnqueueMarked(map[string]bool{"down/w_b/hook": true},
		store.OutboxEntry{Channel: "hook", Payload: []byte(`{"kind":"status_changed","watch_id":"w_b"}`), CreatedAt: t0},
		store.OutboxEntry{Channel: "slack", Payload: []byte(`{"kind":"stage_crossed","watch_id":"w_a"}`), CreatedAt: t0, Attempts: 2, LastError: "HTTP 502"})
	return err
}
