package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// STARTTLS: protocols that start in plain text and upgrade the same
// connection to TLS. startTLS speaks just enough of each protocol to ask for
// the upgrade; every read is bounded in size and by a deadline, so a server
// that stalls or floods cannot hold the probe.

// startTLS protocol names; they double as target URL schemes
// ("smtp://mail.example.com:587").
const (
	protoSMTP     = "smtp"
	protoIMAP     = "imap"
	protoPOP3     = "pop3"
	protoFTP      = "ftp"
	protoPostgres = "postgres"
	protoLDAP     = "ldap"
	protoXMPP     = "xmpp"
)

// startTLSProtocols lists the supported protocols with their default ports.
var startTLSProtocols = map[string]int{
	protoSMTP:     25,
	protoIMAP:     143,
	protoPOP3:     110,
	protoFTP:      21,
	protoPostgres: 5432,
	protoLDAP:     389,
	protoXMPP:     5222,
}

// startTLSAliases are extra URL schemes accepted for the same protocols.
var startTLSAliases = map[string]string{
	"submission": protoSMTP, // RFC 6409 port 587
	"postgresql": protoPostgres,
	"pop":        protoPOP3,
}

// startTLSPortHints names the protocol usually behind a well-known plain
// port: a TLS handshake failing there probably needs STARTTLS.
var startTLSPortHints = map[int]string{
	25: protoSMTP, 587: protoSMTP, 143: protoIMAP, 110: protoPOP3, 21: protoFTP,
	5432: protoPostgres, 389: protoLDAP, 5222: protoXMPP,
}

// startTLSSchemes is every URL scheme that names a STARTTLS protocol (the
// protocol names and their aliases) with its default port.
func startTLSSchemes() map[string]int {
	out := map[string]int{"submission": 587}
	for p, port := range startTLSProtocols {
		out[p] = port
	}
	for alias, p := range startTLSAliases {
		if _, ok := out[alias]; !ok {
			out[alias] = startTLSProtocols[p]
		}
	}
	return out
}

// startTLSProtocol maps a scheme (or alias) to its protocol name; "" when it
// is not a STARTTLS scheme.
func startTLSProtocol(scheme string) string {
	s := strings.ToLower(scheme)
	if _, ok := startTLSProtocols[s]; ok {
		return s
	}
	return startTLSAliases[s]
}

// startTLSHint returns advice for a failed plain TLS handshake on a port
// that usually speaks STARTTLS ("" for other ports).
func startTLSHint(host string, port int) string {
	p, ok := startTLSPortHints[port]
	if !ok {
		return ""
	}
	return fmt.Sprintf("port %d usually speaks %s with STARTTLS: probe %s://%s instead",
		port, strings.ToUpper(p), p, net.JoinHostPort(host, fmt.Sprint(port)))
}

// startTLSError says at which step the upgrade dialogue failed. NotOffered
// is true when the server answered properly but refused or does not offer
// the upgrade (as opposed to not speaking the protocol at all).
type startTLSError struct {
	Proto      string
	Step       string
	NotOffered bool
	Err        error
}

func (e *startTLSError) Error() string {
	return fmt.Sprintf("%s STARTTLS, %s: %v", strings.ToUpper(e.Proto), e.Step, e.Err)
}

func (e *startTLSError) Unwrap() error { return e.Err }

// errUnknownStartTLS is returned for a protocol not in startTLSProtocols.
var errUnknownStartTLS = errors.New("unknown STARTTLS protocol")

const (
	startTLSMaxLine    = 4096
	startTLSMaxLines   = 64
	startTLSMaxXML     = 64 << 10
	startTLSDefaultDur = 10 * time.Second
)

// startTLS performs the plain-text upgrade dialogue of proto on conn, so
// that the caller can start the TLS handshake (tls.Client) on the same
// connection next. host is the name announced where the protocol needs one
// (XMPP's stream "to"). It sets a deadline from ctx (or 10 s) and clears it
// on success. Nothing is buffered past the server's last plain-text byte:
// each protocol's final answer is read exactly, so the TLS handshake sees
// the stream intact.
func startTLS(ctx context.Context, conn net.Conn, proto, host string) error {
	p := startTLSProtocol(proto)
	if p == "" {
		return fmt.Errorf("%w %q", errUnknownStartTLS, proto)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(startTLSDefaultDur)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return &startTLSError{Proto: p, Step: "set deadline", Err: err}
	}
	// A cancelled ctx unblocks reads at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	r := &lineReader{c: conn}
	var err error
	switch p {
	case protoSMTP:
		err = startSMTP(r, conn)
	case protoIMAP:
		err = startIMAP(r, conn)
	case protoPOP3:
		err = startPOP3(r, conn)
	case protoFTP:
		err = startFTP(r, conn)
	case protoPostgres:
		err = startPostgres(conn)
	case protoLDAP:
		err = startLDAP(conn)
	case protoXMPP:
		err = startXMPP(conn, host)
	}
	if err != nil {
		var se *startTLSError
		if errors.As(err, &se) {
			se.Proto = p
			return se
		}
		return &startTLSError{Proto: p, Step: "dialogue", Err: err}
	}
	return conn.SetDeadline(time.Time{})
}

// lineReader reads CRLF lines one byte at a time. It is slow by design and
// harmless at these sizes: a bufio.Reader would swallow the first bytes of
// the TLS handshake that follows the last plain-text line.
type lineReader struct {
	c net.Conn
}

func (r *lineReader) line() (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < startTLSMaxLine {
		if _, err := io.ReadFull(r.c, one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return strings.TrimRight(string(b), "\r"), nil
		}
		b = append(b, one[0])
	}
	return "", fmt.Errorf("line longer than %d bytes", startTLSMaxLine)
}

// reply reads a numbered reply (SMTP, FTP): lines "CCC-text" continue,
// "CCC text" ends. It returns the code and all lines.
func (r *lineReader) reply() (string, []string, error) {
	var lines []string
	for len(lines) < startTLSMaxLines {
		l, err := r.line()
		if err != nil {
			return "", lines, err
		}
		lines = append(lines, l)
		if len(l) < 3 || !isDigits(l[:3]) {
			return "", lines, fmt.Errorf("not a numbered reply: %q", clip(l))
		}
		if len(l) == 3 || l[3] == ' ' {
			return l[:3], lines, nil
		}
		if l[3] != '-' {
			return "", lines, fmt.Errorf("malformed reply line: %q", clip(l))
		}
	}
	return "", lines, fmt.Errorf("reply longer than %d lines", startTLSMaxLines)
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func send(c net.Conn, s string) error {
	_, err := io.WriteString(c, s)
	return err
}

func startSMTP(r *lineReader, c net.Conn) error {
	code, lines, err := r.reply()
	if err != nil {
		return &startTLSError{Step: "greeting", Err: err}
	}
	if code != "220" {
		return &startTLSError{Step: "greeting", Err: fmt.Errorf("server answered %q", clip(strings.Join(lines, " ")))}
	}
	if err := send(c, "EHLO tlswatch.invalid\r\n"); err != nil {
		return &startTLSError{Step: "EHLO", Err: err}
	}
	code, lines, err = r.reply()
	if err != nil {
		return &startTLSError{Step: "EHLO", Err: err}
	}
	if code != "250" {
		return &startTLSError{Step: "EHLO", Err: fmt.Errorf("server answered %q", clip(lines[0]))}
	}
	offered := false
	for _, l := range lines[1:] {
		if len(l) > 4 && strings.EqualFold(strings.TrimSpace(l[4:]), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return &startTLSError{Step: "EHLO", NotOffered: true, Err: errors.New("the server does not offer STARTTLS")}
	}
	if err := send(c, "STARTTLS\r\n"); err != nil {
		return &startTLSError{Step: "STARTTLS", Err: err}
	}
	code, lines, err = r.reply()
	if err != nil {
		return &startTLSError{Step: "STARTTLS", Err: err}
	}
	if code != "220" {
		return &startTLSError{Step: "STARTTLS", NotOffered: true, Err: fmt.Errorf("server answered %q", clip(lines[0]))}
	}
	return nil
}

func startIMAP(r *lineReader, c net.Conn) error {
	l, err := r.line()
	if err != nil {
		return &startTLSError{Step: "greeting", Err: err}
	}
	if !strings.HasPrefix(l, "* OK") {
		return &startTLSError{Step: "greeting", Err: fmt.Errorf("server answered %q", clip(l))}
	}
	if err := send(c, "a1 STARTTLS\r\n"); err != nil {
		return &startTLSError{Step: "STARTTLS", Err: err}
	}
	for i := 0; i < startTLSMaxLines; i++ {
		l, err := r.line()
		if err != nil {
			return &startTLSError{Step: "STARTTLS", Err: err}
		}
		switch {
		case strings.HasPrefix(l, "a1 OK"):
			return nil
		case strings.HasPrefix(l, "a1 "):
			return &startTLSError{Step: "STARTTLS", NotOffered: true, Err: fmt.Errorf("server answered %q", clip(l))}
		}
	}
	return &startTLSError{Step: "STARTTLS", Err: errors.New("no tagged answer")}
}

func startPOP3(r *lineReader, c net.Conn) error {
	l, err := r.line()
	if err != nil {
		return &startTLSError{Step: "greeting", Err: err}
	}
	if !strings.HasPrefix(l, "+OK") {
		return &startTLSError{Step: "greeting", Err: fmt.Errorf("server answered %q", clip(l))}
	}
	if err := send(c, "STLS\r\n"); err != nil {
		return &startTLSError{Step: "STLS", Err: err}
	}
	l, err = r.line()
	if err != nil {
		return &startTLSError{Step: "STLS", Err: err}
	}
	if !strings.HasPrefix(l, "+OK") {
		return &startTLSError{Step: "STLS", NotOffered: true, Err: fmt.Errorf("server answered %q", clip(l))}
	}
	return nil
}

func startFTP(r *lineReader, c net.Conn) error {
	code, lines, err := r.reply()
	if err != nil {
		return &startTLSError{Step: "greeting", Err: err}
	}
	if code != "220" {
		return &startTLSError{Step: "greeting", Err: fmt.Errorf("server answered %q", clip(strings.Join(lines, " ")))}
	}
	if err := send(c, "AUTH TLS\r\n"); err != nil {
		return &startTLSError{Step: "AUTH TLS", Err: err}
	}
	code, lines, err = r.reply()
	if err != nil {
		return &startTLSError{Step: "AUTH TLS", Err: err}
	}
	if code != "234" {
		return &startTLSError{Step: "AUTH TLS", NotOffered: true, Err: fmt.Errorf("server answered %q", clip(lines[0]))}
	}
	return nil
}

// postgresSSLRequest is the SSLRequest message: length 8, code 80877103.
var postgresSSLRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

func startPostgres(c net.Conn) error {
	if _, err := c.Write(postgresSSLRequest); err != nil {
		return &startTLSError{Step: "SSLRequest", Err: err}
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return &startTLSError{Step: "SSLRequest", Err: err}
	}
	switch b[0] {
	case 'S':
		return nil
	case 'N':
		return &startTLSError{Step: "SSLRequest", NotOffered: true, Err: errors.New("the server does not accept SSL")}
	}
	return &startTLSError{Step: "SSLRequest", Err: fmt.Errorf("unexpected answer byte 0x%02x", b[0])}
}

// ldapStartTLSRequest is LDAPMessage{ messageID 1, extendedReq
// { requestName "1.3.6.1.4.1.1466.20037" } } in BER (RFC 4511 §4.14).
var ldapStartTLSRequest = append([]byte{0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16},
	"1.3.6.1.4.1.1466.20037"...)

func startLDAP(c net.Conn) error {
	if _, err := c.Write(ldapStartTLSRequest); err != nil {
		return &startTLSError{Step: "extended request", Err: err}
	}
	msg, err := readBER(c, 4096)
	if err != nil {
		return &startTLSError{Step: "extended response", Err: err}
	}
	// SEQUENCE { INTEGER id, [APPLICATION 24] { ENUMERATED resultCode, ... } }
	body, ok := berChild(msg, 0x30)
	if !ok {
		return &startTLSError{Step: "extended response", Err: errors.New("not an LDAP message")}
	}
	_, rest, ok := berNext(body) // messageID
	if !ok {
		return &startTLSError{Step: "extended response", Err: errors.New("not an LDAP message")}
	}
	resp, _, ok := berNext(rest)
	if !ok || len(resp) < 2 || resp[0] != 0x78 {
		return &startTLSError{Step: "extended response", Err: errors.New("not an extended response")}
	}
	inner, ok := berChild(resp, 0x78)
	if !ok {
		return &startTLSError{Step: "extended response", Err: errors.New("malformed extended response")}
	}
	code, _, ok := berNext(inner)
	if !ok || len(code) != 3 || code[0] != 0x0a {
		return &startTLSError{Step: "extended response", Err: errors.New("malformed result code")}
	}
	if code[2] != 0 {
		return &startTLSError{Step: "extended response", NotOffered: true, Err: fmt.Errorf("LDAP result code %d", code[2])}
	}
	return nil
}

// readBER reads exactly one BER TLV (definite length) of at most max bytes.
func readBER(c net.Conn, max int) ([]byte, error) {
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	n := int(hdr[1])
	if hdr[1]&0x80 != 0 {
		k := int(hdr[1] & 0x7f)
		if k == 0 || k > 3 {
			return nil, errors.New("unsupported BER length")
		}
		lb := make([]byte, k)
		if _, err := io.ReadFull(c, lb); err != nil {
			return nil, err
		}
		hdr = append(hdr, lb...)
		n = 0
		for _, b := range lb {
			n = n<<8 | int(b)
		}
	}
	if n > max {
		return nil, fmt.Errorf("message of %d bytes exceeds %d", n, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, err
	}
	return append(hdr, body...), nil
}

// berNext splits the first TLV off b.
func berNext(b []byte) (tlv, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n, hl := int(b[1]), 2
	if b[1]&0x80 != 0 {
		k := int(b[1] & 0x7f)
		if k == 0 || k > 3 || len(b) < 2+k {
			return nil, nil, false
		}
		n = 0
		for _, x := range b[2 : 2+k] {
			n = n<<8 | int(x)
		}
		hl = 2 + k
	}
	if len(b) < hl+n {
		return nil, nil, false
	}
	return b[:hl+n], b[hl+n:], true
}

// berChild returns the contents of tlv when its tag is tag.
func berChild(tlv []byte, tag byte) ([]byte, bool) {
	t, _, ok := berNext(tlv)
	if !ok || t[0] != tag {
		return nil, false
	}
	hl := 2
	if t[1]&0x80 != 0 {
		hl += int(t[1] & 0x7f)
	}
	return t[hl:], true
}

func startXMPP(c net.Conn, host string) error {
	open := fmt.Sprintf("<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
		xmlAttrEscape(host))
	if err := send(c, open); err != nil {
		return &startTLSError{Step: "stream", Err: err}
	}
	feats, err := readUntil(c, []string{"</stream:features>", "</features>"}, startTLSMaxXML)
	if err != nil {
		return &startTLSError{Step: "stream features", Err: err}
	}
	if !bytes.Contains(feats, []byte("urn:ietf:params:xml:ns:xmpp-tls")) {
		return &startTLSError{Step: "stream features", NotOffered: true, Err: errors.New("the server does not offer STARTTLS")}
	}
	if err := send(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
		return &startTLSError{Step: "starttls", Err: err}
	}
	ans, err := readUntil(c, []string{"/>", "</proceed>", "</failure>"}, 4096)
	if err != nil {
		return &startTLSError{Step: "starttls", Err: err}
	}
	if !bytes.Contains(ans, []byte("<proceed")) {
		return &startTLSError{Step: "starttls", NotOffered: true, Err: fmt.Errorf("server answered %q", clip(string(ans)))}
	}
	return nil
}

// readUntil reads byte by byte until one of the markers ends the data read
// so far, at most max bytes.
func readUntil(c net.Conn, markers []string, max int) ([]byte, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < max {
		if _, err := io.ReadFull(c, one); err != nil {
			return b, err
		}
		b = append(b, one[0])
		if one[0] != '>' {
			continue
		}
		for _, m := range markers {
			if bytes.HasSuffix(b, []byte(m)) {
				return b, nil
			}
		}
	}
	return b, fmt.Errorf("no answer within %d bytes", max)
}

func xmlAttrEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "'", "&apos;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
