package auth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// fetcher reads JSON documents from issuers: HTTPS verified against the
// operator's roots (or plain HTTP to loopback), through the operator's
// dialer, never through a proxy (which would escape the outbound policy),
// no redirects (a redirect could leave HTTPS), a deadline on each request
// and a cap on each body.
type fetcher struct {
	client  *http.Client
	tr      *http.Transport
	timeout time.Duration
	max     int64
}

var errRedirect = errors.New("redirects are not followed")

func newFetcher(c Config) *fetcher {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           c.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: c.Roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   c.FetchTimeout,
		ResponseHeaderTimeout: c.FetchTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &fetcher{
		client: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
		},
		tr:      tr,
		timeout: c.FetchTimeout,
		max:     c.MaxDocumentBytes,
	}
}

// statusError is a non-200 answer; discovery moves on to the next
// well-known URL after a 4xx.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

// getJSON fetches rawURL into dst.
func (f *fetcher) getJSON(ctx context.Context, rawURL string, dst any) error {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	return f.do(ctx, req, dst)
}

// postForm posts form to rawURL with HTTP Basic client authentication
// (RFC 6749 section 2.3.1: both parts form-encoded first) and decodes the
// answer into dst.
func (f *fetcher) postForm(ctx context.Context, rawURL string, form url.Values, user, pass string, dst any) error {
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	return f.do(ctx, req, dst)
}

// do runs req detached from the caller's cancellation (a client that hangs
// up must not abort a fetch other requests wait for) but within the fetch
// deadline. Errors name the URL, never a token.
func (f *fetcher) do(ctx context.Context, req *http.Request, dst any) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
	defer cancel()
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), &statusError{resp.StatusCode})
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.max+1))
	if err != nil {
		return fmt.Errorf("%s %s: reading: %w", req.Method, req.URL.Redacted(), err)
	}
	if int64(len(body)) > f.max {
		return fmt.Errorf("%s %s: document larger than %d bytes", req.Method, req.URL.Redacted(), f.max)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("%s %s: not the JSON expected: %v", req.Method, req.URL.Redacted(), err)
	}
	return nil
}

// unwrapURLError drops url.Error's own "Get URL:" prefix, which the caller
// already says.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (f *fetcher) close() { f.tr.CloseIdleConnections() }
