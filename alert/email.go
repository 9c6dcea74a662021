package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"
)

type emailSender struct {
	addr       string // host:port
	host       string
	from       *mail.Address
	to         []*mail.Address
	username   string
	password   string
	requireTLS bool
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	roots      *x509.CertPool
	timeout    time.Duration
	helo       string
	log        *slog.Logger
}

func newEmailSender(ch *Channel, o *Options) (*emailSender, error) {
	host, _, err := net.SplitHostPort(ch.SMTP)
	if err != nil {
		return nil, fmt.Errorf("smtp %q: %w", ch.SMTP, err)
	}
	from, err := mail.ParseAddress(ch.From)
	if err != nil {
		return nil, fmt.Errorf("from %q: %w", ch.From, err)
	}
	s := &emailSender{
		addr: ch.SMTP, host: host, from: from,
		username: ch.Username, password: ch.Password, requireTLS: ch.RequireTLS,
		dial: o.DialContext, roots: o.RootCAs, timeout: o.Timeout, log: o.Logger,
		helo: "localhost",
	}
	// Some servers refuse "localhost" in EHLO; a real host name is better.
	if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") {
		s.helo = h
	}
	for _, t := range ch.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("to %q: %w", t, err)
		}
		s.to = append(s.to, a)
	}
	return s, nil
}

// send speaks SMTP on a connection with a deadline for the whole exchange
// (net/smtp has no timeouts of its own) that is also closed when ctx ends.
func (s *emailSender) send(ctx context.Context, a *Alert) (err error) {
	conn, err := s.dial(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
		return fmt.Errorf("smtp %s: %w", s.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		return classifySMTP(s.addr, "greeting", err)
	}
	defer c.Close()
	if err := c.Hello(s.helo); err != nil {
		return classifySMTP(s.addr, "EHLO", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: s.host, RootCAs: s.roots, MinVersion: tls.VersionTLS12}); err != nil {
			return classifySMTP(s.addr, "STARTTLS", err)
		}
	} else if s.requireTLS {
		// Retried: a missing STARTTLS can be a downgrade by something in
		// the path, not only the server's configuration.
		return fmt.Errorf("smtp %s: server does not offer STARTTLS and require_tls is set", s.addr)
	}
	if s.username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return permanent(fmt.Errorf("smtp %s: a username is configured but the server offers no AUTH", s.addr))
		}
		// PlainAuth refuses to send the password over a connection without
		// TLS unless the server is localhost.
		if err := c.Auth(smtp.PlainAuth("", s.username, s.password, s.host)); err != nil {
			return classifySMTP(s.addr, "AUTH", err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return classifySMTP(s.addr, "MAIL FROM", err)
	}
	accepted := 0
	var rejected []string
	for _, to := range s.to {
		if err := c.Rcpt(to.Address); err != nil {
			if e := classifySMTP(s.addr, "RCPT TO "+to.Address, err); !isPermanent(e) {
				return e
			}
			rejected = append(rejected, to.Address+": "+oneLine(err.Error()))
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return permanent(fmt.Errorf("smtp %s: every recipient was rejected: %s", s.addr, strings.Join(rejected, "; ")))
	}
	if len(rejected) > 0 {
		// The others still get the alert; the operator learns of the typo.
		s.log.Warn("alert: some email recipients were rejected", "rejected", strings.Join(rejected, "; "), "delivery", a.ID)
	}
	w, err := c.Data()
	if err != nil {
		return classifySMTP(s.addr, "DATA", err)
	}
	if _, err := w.Write(s.message(a)); err != nil {
		return classifySMTP(s.addr, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return classifySMTP(s.addr, "end of DATA", err)
	}
	// The server has taken the message once DATA is acknowledged; a failed
	// QUIT does not make it undelivered.
	_ = c.Quit()
	return nil
}

// classifySMTP: 5xx replies are permanent, 4xx and network errors transient.
func classifySMTP(addr, step string, err error) error {
	err = fmt.Errorf("smtp %s: %s: %w", addr, step, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanent(err)
	}
	return err
}

func (s *emailSender) message(a *Alert) []byte {
	var tos []string
	for _, t := range s.to {
		tos = append(tos, t.String())
	}
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", s.from.String())
	hdr("To", strings.Join(tos, ", "))
	// oneLine strips CR/LF: the subject carries text a hostile server chose,
	// and a newline there would inject headers.
	hdr("Subject", mime.QEncoding.Encode("utf-8", oneLine("[tlswatch] "+headline(a))))
	hdr("Date", a.Timestamp.Format(time.RFC1123Z))
	// The delivery id as Message-ID lets mail systems drop a duplicate sent
	// in the at-least-once window.
	hdr("Message-ID", "<"+a.ID+"@tlswatch>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("Auto-Submitted", "auto-generated")
	hdr(HeaderDelivery, a.ID)
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(emailBody(a)))
	_ = qp.Close()
	return b.Bytes()
}

func emailBody(a *Alert) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\r\n\r\n%s\r\n\r\n", headline(a), a.Message)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-15s %s\r\n", k+":", v)
		}
	}
	line("Target", a.Target)
	line("Watch", a.WatchID)
	line("Event", a.Kind)
	line("Level", a.Level)
	line("State", a.State)
	line("Status", a.Status)
	line("Expiry stage", a.ExpiryStage)
	if a.DaysRemaining != nil {
		line("Days remaining", fmt.Sprint(*a.DaysRemaining))
	}
	if a.NotAfter != nil {
		line("Not after", a.NotAfter.Format(time.RFC3339))
	}
	line("Fingerprint", a.Fingerprint)
	line("Time", a.Timestamp.Format(time.RFC3339))
	if len(a.Findings) > 0 {
		b.WriteString("\r\nFindings:\r\n")
		for _, f := range a.Findings {
			fmt.Fprintf(&b, "  - %s (%s): %s\r\n", f.Code, f.Severity, oneLine(f.Message))
		}
	}
	fmt.Fprintf(&b, "\r\nDelivery %s\r\n", a.ID)
	return b.String()
}
