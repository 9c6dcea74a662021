package probe

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// AIA (Authority Information Access) fetching: browsers download a missing
// intermediate from the caIssuers URL in the certificate; agents do not.
// We fetch it only to tell an incomplete chain from an untrusted root.
const (
	aiaTimeout  = 5 * time.Second
	aiaMaxBytes = 1 << 20
	aiaMaxHops  = 3
	aiaCacheTTL = time.Hour
)

// AIAFetch is one caIssuers download.
type AIAFetch struct {
	URL     string `json:"url"`
	For     string `json:"for"`               // subject of the certificate that names the URL
	Subject string `json:"subject,omitempty"` // the certificate obtained
	SHA256  string `json:"sha256,omitempty"`
	Error   string `json:"error,omitempty"`
}

// completeViaAIA follows caIssuers URLs from top (at most aiaMaxHops) and
// retries verification with what it fetched. It returns the chains when a
// path then verifies, the certificates fetched, and a note explaining why
// AIA could not help otherwise.
func (a *chainAnalysis) completeViaAIA(ctx context.Context, opts Options, vo x509.VerifyOptions, top *x509.Certificate) ([][]*x509.Certificate, []*x509.Certificate, string) {
	inter := vo.Intermediates.Clone()
	vo.Intermediates = inter
	cur := top
	var fetched []*x509.Certificate
	for hop := 0; hop < aiaMaxHops; hop++ {
		if len(cur.IssuingCertificateURL) == 0 {
			if hop == 0 {
				return nil, nil, ""
			}
			return nil, fetched, fmt.Sprintf("%s names no AIA URL to continue", cur.Subject.String())
		}
		var issuer *x509.Certificate
		var lastErr error
		for _, u := range cur.IssuingCertificateURL {
			c, err := opts.Cache.aia.issuerFor(ctx, opts.HTTPClient, u, cur, opts.Now)
			f := AIAFetch{URL: u, For: cur.Subject.String()}
			if err != nil {
				f.Error = err.Error()
				lastErr = err
			} else {
				ci := certInfo(c, opts.Now, false)
				f.Subject, f.SHA256 = ci.Subject, ci.SHA256
			}
			a.aia = append(a.aia, f)
			if err == nil {
				issuer = c
				break
			}
		}
		if issuer == nil {
			return nil, fetched, fmt.Sprintf("fetching the AIA issuer failed: %v", lastErr)
		}
		fetched = append(fetched, issuer)
		a.aiaCerts = append(a.aiaCerts, issuer)
		if isSelfSigned(issuer) {
			// A root from AIA is trusted only if the store has it; Verify
			// below says so either way.
			chains, err := a.leaf.Verify(vo)
			if err == nil {
				return chains, fetched, ""
			}
			return nil, fetched, ""
		}
		inter.AddCert(issuer)
		chains, err := a.leaf.Verify(vo)
		if err == nil {
			return chains, fetched, ""
		}
		var cie x509.CertificateInvalidError
		if errors.As(err, &cie) {
			return nil, fetched, fmt.Sprintf("the AIA issuer does not verify: %s", invalidReasonText(cie))
		}
		cur = issuer
	}
	return nil, fetched, fmt.Sprintf("no trusted root after %d AIA hops", aiaMaxHops)
}

// aiaCache shares downloads across probes (a fleet often misses the same
// intermediate) and lets concurrent probes wait for one download. A nil
// *aiaCache fetches every time.
type aiaCache struct {
	mu sync.Mutex
	m  map[string]*aiaEntry
}

type aiaEntry struct {
	done    chan struct{}
	certs   []*x509.Certificate
	err     error
	fetched time.Time
}

// issuerFor returns the certificate at rawURL that issued child. A cached
// answer that does not match child is fetched again (the URL may now serve
// something else).
func (c *aiaCache) issuerFor(ctx context.Context, client *http.Client, rawURL string, child *x509.Certificate, now time.Time) (*x509.Certificate, error) {
	for attempt := 0; attempt < 2; attempt++ {
		certs, err := c.get(ctx, client, rawURL, now, attempt > 0)
		if err != nil {
			return nil, err
		}
		for _, cand := range certs {
			if issuedBy(child, cand) {
				return cand, nil
			}
		}
	}
	return nil, fmt.Errorf("%s serves no issuer of %s", rawURL, child.Subject.String())
}

func (c *aiaCache) get(ctx context.Context, client *http.Client, rawURL string, now time.Time, refresh bool) ([]*x509.Certificate, error) {
	if c == nil {
		return fetchAIA(ctx, client, rawURL)
	}
	c.mu.Lock()
	if e, ok := c.m[rawURL]; ok {
		select {
		case <-e.done:
			age := now.Sub(e.fetched)
			if !refresh && age < aiaCacheTTL && age > -aiaCacheTTL {
				c.mu.Unlock()
				return e.certs, nil
			}
			delete(c.m, rawURL)
		default:
			c.mu.Unlock()
			select {
			case <-e.done:
				return e.certs, e.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	e := &aiaEntry{done: make(chan struct{}), fetched: now}
	if len(c.m) >= aiaCacheMax {
		c.evictLocked()
	}
	c.m[rawURL] = e
	c.mu.Unlock()

	e.certs, e.err = fetchAIA(ctx, client, rawURL)
	close(e.done)
	if e.err != nil {
		// Failures are not cached beyond the in-flight waiters: a flaky CA
		// server should not poison later probes.
		c.mu.Lock()
		if c.m[rawURL] == e {
			delete(c.m, rawURL)
		}
		c.mu.Unlock()
	}
	return e.certs, e.err
}

// evictLocked drops the oldest completed entry.
func (c *aiaCache) evictLocked() {
	var victim string
	var oldest time.Time
	for k, e := range c.m {
		select {
		case <-e.done:
		default:
			continue
		}
		if victim == "" || e.fetched.Before(oldest) {
			victim, oldest = k, e.fetched
		}
	}
	if victim != "" {
		delete(c.m, victim)
	}
}

func fetchAIA(ctx context.Context, client *http.Client, rawURL string) ([]*x509.Certificate, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("AIA URL %q is not an http(s) URL", rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, aiaTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("AIA request %s: %w", rawURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", rawURL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, aiaMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	if len(body) > aiaMaxBytes {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", rawURL, aiaMaxBytes)
	}
	certs, err := parseCertBundle(body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	return certs, nil
}

// parseCertBundle reads DER (one or concatenated), PEM, or a certs-only
// PKCS#7 bundle (.p7c), the three forms CAs publish.
func parseCertBundle(b []byte) ([]*x509.Certificate, error) {
	if certs, err := x509.ParseCertificates(b); err == nil && len(certs) > 0 {
		return certs, nil
	}
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
				certs = append(certs, c)
			}
		}
		if blk.Type == "PKCS7" {
			if cs, err := parsePKCS7Certs(blk.Bytes); err == nil {
				certs = append(certs, cs...)
			}
		}
	}
	if len(certs) > 0 {
		return certs, nil
	}
	if cs, err := parsePKCS7Certs(b); err == nil && len(cs) > 0 {
		return cs, nil
	}
	return nil, errors.New("no certificate in the response (not DER, PEM or PKCS#7)")
}

// parsePKCS7Certs extracts the certificates of a degenerate (certs-only)
// PKCS#7 SignedData.
func parsePKCS7Certs(der []byte) ([]*x509.Certificate, error) {
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, err
	}
	var sd struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		ContentInfo      asn1.RawValue
		Certificates     asn1.RawValue `asn1:"optional,tag:0"`
		CRLs             asn1.RawValue `asn1:"optional,tag:1"`
		SignerInfos      asn1.RawValue
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, err
	}
	return x509.ParseCertificates(sd.Certificates.Bytes)
}
