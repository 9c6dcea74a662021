package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/netpolicy"
)

// sender delivers one alert to one channel. A nil error means the receiver
// accepted it. Errors that must not be retried are *permanentError.
type sender interface {
	send(ctx context.Context, a *Alert) error
}

// permanentError: retrying cannot help (the receiver rejected the request as
// malformed or unauthorised, the address is blocked by policy). The entry is
// logged and dropped.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err: err} }

// retryAfterError: the receiver asked us to wait (429/503 with Retry-After).
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) || netpolicy.IsBlocked(err)
}

// maxResponse bounds what we read of a receiver's answer: we only need the
// status and a snippet for the log.
const maxResponse = 64 << 10

// newHTTPClient has every timeout set: a receiver that accepts and never
// answers must not stall the delivery loop. Redirects are not followed: a
// configured URL that redirects is a configuration error, and following
// would send the payload (and its secrets) somewhere the operator never
// named.
func newHTTPClient(o *Options) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           o.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// postJSON sends body and classifies the answer: 2xx delivered; 408, 429 and
// 5xx retried (honouring Retry-After); other 3xx/4xx permanent; network
// errors retried.
func postJSON(ctx context.Context, c *http.Client, rawURL string, body []byte, hdr http.Header, userAgent string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return permanent(fmt.Errorf("build request for %s: %w", redactURL(rawURL), err))
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.Do(req)
	if err != nil {
		// *url.Error prints the full URL, and Slack's URL is its secret:
		// report the inner error with a redacted URL instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = fmt.Errorf("POST %s: %w", redactURL(rawURL), err)
		if netpolicy.IsBlocked(err) {
			return permanent(err)
		}
		return err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Drain (bounded) so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err = fmt.Errorf("POST %s: HTTP %d: %s", redactURL(rawURL), code, oneLine(string(snippet)))
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		if d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 {
			return &retryAfterError{err: err, after: d}
		}
		return err
	default:
		return permanent(err)
	}
}

// redactURL keeps scheme and host: paths and queries of webhook URLs are
// often the credential (Slack's /services/T…/B…/secret).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/…"
	}
	return s
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// oneLine makes receiver text safe for one log line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), 200)
}
