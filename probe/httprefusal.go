package probe

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http2"
)

// httpRefusalError is a refusal of the client certificate at the HTTP
// layer, the way nginx refuses: the TLS handshake completes whatever the
// client sent, and every request gets "400 No required SSL certificate was
// sent" or "400 The SSL certificate error".
type httpRefusalError struct {
	status int
	title  string
}

func (e *httpRefusalError) Error() string {
	return fmt.Sprintf("HTTP %d %q", e.status, e.title)
}

// errConn remembers the first error a read or write of the connection met.
type errConn struct {
	net.Conn
	mu  sync.Mutex
	err error
}

func (c *errConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.keep(err)
	return n, err
}

func (c *errConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.keep(err)
	return n, err
}

func (c *errConn) keep(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// or is the connection's own first error that refuses, else err.
func (c *errConn) or(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if refusalError(c.err) != nil {
		return c.err
	}
	return err
}

var titleRE = regexp.MustCompile(`(?is)<title>\s*(.*?)\s*</title>`)

// httpRefusal asks GET / over the connection (HTTP/2 when negotiated) and
// returns a TLS refusal (alert, reset), an *httpRefusalError, or nil when
// the server answered anything else or nothing in time.
func httpRefusal(tc *tls.Conn, host string) error {
	req, err := http.NewRequest(http.MethodGet, "https://"+host+"/", nil)
	if err != nil {
		return nil
	}
	req.Header.Set("User-Agent", "tlswatch")
	req.Close = true
	var resp *http.Response
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		// http2 reports a connection that died under it only as "could
		// not be established": keep the conn's own first error, which is
		// the server's alert or reset.
		ec := &errConn{Conn: tc}
		cc, err := (&http2.Transport{}).NewClientConn(ec)
		if err != nil {
			return refusalError(ec.or(err))
		}
		defer cc.Close()
		resp, err = cc.RoundTrip(req)
		if err != nil {
			return refusalError(ec.or(err))
		}
	} else {
		if err := req.Write(tc); err != nil {
			return refusalError(err)
		}
		if resp, err = http.ReadResponse(bufio.NewReader(tc), req); err != nil {
			return refusalError(err)
		}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, 495, 496: // nginx's own codes for certificate errors
	default:
		return nil
	}
	if !bytes.Contains(bytes.ToLower(body), []byte("ssl certificate")) {
		return nil
	}
	title := http.StatusText(resp.StatusCode)
	if m := titleRE.FindSubmatch(body); m != nil {
		title = strings.TrimPrefix(string(m[1]), strconv.Itoa(resp.StatusCode)+" ")
	}
	return &httpRefusalError{status: resp.StatusCode, title: title}
}
