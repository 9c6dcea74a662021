// Package ari asks an ACME CA when it suggests renewing a certificate: ACME
// Renewal Information (RFC 9773). The CA's directory names the renewalInfo
// endpoint; a GET of that endpoint plus the certificate's identifier
// returns the suggested window. A CA moves the window into the past when
// the certificate must be replaced early (a revocation, an incident).
//
// Everything here is bounded: each request has a deadline and a size cap,
// answers are cached as the RFC asks (Retry-After, held between a minute
// and a day), and only https URLs are fetched.
package ari

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits and defaults of a Fetcher.
const (
	DefaultTimeout = 5 * time.Second
	maxBodyBytes   = 64 << 10

	// The RFC asks clients to hold Retry-After between a minute and a day.
	minRetryAfter = time.Minute
	maxRetryAfter = 24 * time.Hour
	// defaultRetryAfter applies when the CA sends none, or an error that
	// is not temporary: the RFC's long-term error interval.
	defaultRetryAfter = 6 * time.Hour
	// directoryTTL: a directory changes rarely; a day keeps a fleet of
	// probes at one request per CA per day.
	directoryTTL = 24 * time.Hour
)

// ErrUnknownCertificate is the CA's 404: it did not issue the certificate
// (or no longer knows it).
var ErrUnknownCertificate = errors.New("the CA does not know this certificate")

// Directory is what tlswatch reads from an ACME directory (RFC 8555 7.1.1).
type Directory struct {
	URL           string   // where it was fetched
	RenewalInfo   string   // the renewalInfo endpoint; empty when the CA has no ARI
	CAAIdentities []string // meta.caaIdentities: the CAA issuer names of this CA
}

// Window is a CA's suggested renewal window for one certificate.
type Window struct {
	Start, End     time.Time
	ExplanationURL string
	URL            string // the renewalInfo resource asked
}

// CertID is the ARI identifier of c: the base64url (unpadded) key
// identifier of its Authority Key Identifier, a dot, and the base64url DER
// bytes of its serial number (RFC 9773 section 4.1).
func CertID(c *x509.Certificate) (string, error) {
	if len(c.AuthorityKeyId) == 0 {
		return "", errors.New("the certificate has no authority key identifier")
	}
	if c.SerialNumber == nil || c.SerialNumber.Sign() <= 0 {
		return "", errors.New("the certificate has no positive serial number")
	}
	serial := c.SerialNumber.Bytes()
	if serial[0]&0x80 != 0 {
		// DER INTEGER content: a positive number whose top bit is set
		// takes a leading zero byte.
		serial = append([]byte{0}, serial...)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(c.AuthorityKeyId) + "." + enc.EncodeToString(serial), nil
}

// Fetcher fetches directories and renewal information. Client must enforce
// the caller's outbound policy; Cache may be nil (nothing kept).
type Fetcher struct {
	Client  *http.Client
	Cache   *Cache
	Now     time.Time     // the clock for cache lifetimes; zero: time.Now()
	Timeout time.Duration // per request; zero: DefaultTimeout
}

func (f Fetcher) now() time.Time {
	if f.Now.IsZero() {
		return time.Now()
	}
	return f.Now
}

// Directory fetches (or recalls) the ACME directory at dirURL.
func (f Fetcher) Directory(ctx context.Context, dirURL string) (Directory, error) {
	v, err := f.Cache.do(ctx, "dir "+dirURL, f.now(), func() (any, time.Duration, error) {
		var raw struct {
			RenewalInfo string `json:"renewalInfo"`
			Meta        struct {
				CAAIdentities []string `json:"caaIdentities"`
			} `json:"meta"`
		}
		if _, err := f.getJSON(ctx, dirURL, &raw); err != nil {
			return nil, 0, fmt.Errorf("ACME directory %s: %w", dirURL, err)
		}
		d := Directory{URL: dirURL, RenewalInfo: raw.RenewalInfo, CAAIdentities: raw.Meta.CAAIdentities}
		return d, directoryTTL, nil
	})
	if err != nil {
		return Directory{}, err
	}
	return v.(Directory), nil
}

// RenewalWindow fetches (or recalls) the suggested window of c from the
// renewalInfo endpoint of dir.
func (f Fetcher) RenewalWindow(ctx context.Context, dir Directory, c *x509.Certificate) (Window, error) {
	if dir.RenewalInfo == "" {
		return Window{}, fmt.Errorf("the ACME directory %s offers no renewalInfo", dir.URL)
	}
	id, err := CertID(c)
	if err != nil {
		return Window{}, err
	}
	u := strings.TrimRight(dir.RenewalInfo, "/") + "/" + id
	v, err := f.Cache.do(ctx, "ari "+u, f.now(), func() (any, time.Duration, error) {
		return f.fetchWindow(ctx, u)
	})
	if err != nil {
		return Window{}, err
	}
	return v.(Window), nil
}

// fetchWindow GETs one renewalInfo resource. The duration returned is how
// long to keep the answer, errors included when the RFC says to wait.
func (f Fetcher) fetchWindow(ctx context.Context, u string) (any, time.Duration, error) {
	var raw struct {
		SuggestedWindow struct {
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
		} `json:"suggestedWindow"`
		ExplanationURL string `json:"explanationURL"`
	}
	resp, err := f.getJSON(ctx, u, &raw)
	if err != nil {
		if resp != nil && resp.StatusCode < 500 {
			// Not temporary: ask again when the CA says, or in 6 hours.
			return nil, retryAfter(resp, f.now()), fmt.Errorf("renewalInfo %s: %w", u, err)
		}
		return nil, 0, fmt.Errorf("renewalInfo %s: %w", u, err)
	}
	w := Window{Start: raw.SuggestedWindow.Start.UTC(), End: raw.SuggestedWindow.End.UTC(), ExplanationURL: raw.ExplanationURL, URL: u}
	if w.Start.IsZero() || !w.End.After(w.Start) {
		// The RFC: treat as no answer at all.
		return nil, retryAfter(resp, f.now()), fmt.Errorf("renewalInfo %s: invalid suggestedWindow (start %s, end %s)", u,
			w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
	}
	if e := w.ExplanationURL; e != "" {
		if pu, err := url.Parse(e); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") {
			w.ExplanationURL = "" // shown to people: only a web link
		}
	}
	return w, retryAfter(resp, f.now()), nil
}

// getJSON GETs an https URL and decodes a JSON body of at most
// maxBodyBytes. The response is returned (body closed) whenever one came.
func (f Fetcher) getJSON(ctx context.Context, u string, v any) (*http.Response, error) {
	if err := checkURL(u); err != nil {
		return nil, err
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	switch {
	case err != nil:
		return resp, fmt.Errorf("reading the answer: %w", err)
	case resp.StatusCode == http.StatusNotFound:
		return resp, ErrUnknownCertificate
	case resp.StatusCode != http.StatusOK:
		return resp, fmt.Errorf("HTTP %s", resp.Status)
	case len(body) > maxBodyBytes:
		return resp, fmt.Errorf("answer larger than %d bytes", maxBodyBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp, fmt.Errorf("not the JSON expected: %w", err)
	}
	return resp, nil
}

// checkURL accepts absolute https URLs only: ACME is https by definition
// (RFC 8555 section 6.1), and nothing else may be fetched on a CA's word.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL %q: %w", raw, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("URL %q: only https URLs are fetched", raw)
	}
	return nil
}

// CheckDirectoryURL says whether a directory URL given by an operator can
// be used at all.
func CheckDirectoryURL(raw string) error { return checkURL(raw) }

// retryAfter reads Retry-After (seconds or an HTTP date) and holds it
// between a minute and a day; without one it is the RFC's 6 hours.
func retryAfter(resp *http.Response, now time.Time) time.Duration {
	d := defaultRetryAfter
	if resp != nil {
		if h := strings.TrimSpace(resp.Header.Get("Retry-After")); h != "" {
			if secs, err := strconv.ParseInt(h, 10, 64); err == nil && secs >= 0 {
				d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
			} else if t, err := http.ParseTime(h); err == nil {
				d = t.Sub(now)
			}
		}
	}
	return min(max(d, minRetryAfter), maxRetryAfter)
}
