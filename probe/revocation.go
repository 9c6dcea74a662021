package probe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// Revocation checking: the stapled OCSP response first (free: it came with
// the handshake), then the responder named in the certificate, then its CRL.
// Every network step is bounded in time and size and cached, and a response
// that does not verify against the issuer is never taken as "good".

// Revocation methods and statuses as reported in Revocation.
const (
	RevMethodStaple = "staple"
	RevMethodOCSP   = "ocsp"
	RevMethodCRL    = "crl"
	RevMethodNone   = "none"

	RevStatusGood        = "good"
	RevStatusRevoked     = "revoked"
	RevStatusUnknown     = "unknown"     // the responder does not know the certificate
	RevStatusUnavailable = "unavailable" // a named source failed, no verified answer
	RevStatusUnchecked   = "unchecked"   // no source named, or checking turned off
)

// Limits for revocation fetching.
const (
	defaultRevocationTimeout = 5 * time.Second
	maxOCSPResponseBytes     = 64 << 10
	maxCRLBytes              = 10 << 20
	maxRevocationURLs        = 2 // per certificate and method: the rest are mirrors
	// ocspClockSkew tolerates responders whose clock runs a little ahead.
	ocspClockSkew = 5 * time.Minute
)

// oidTLSFeature is the TLS feature extension (RFC 7633); with
// status_request (5) inside, the certificate demands an OCSP staple.
var oidTLSFeature = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}

// tlsFeatureStatusRequest is the TLS extension number of status_request.
const tlsFeatureStatusRequest = 5

// MustStaple reports whether c carries the TLS feature extension with
// status_request: clients that honour it (Firefox) hard-fail without a staple.
func hasMustStaple(c *x509.Certificate) bool {
	if c == nil {
		return false
	}
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidTLSFeature) {
			continue
		}
		// Features ::= SEQUENCE OF INTEGER
		s := cryptobyte.String(e.Value)
		var seq cryptobyte.String
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
			return false
		}
		for !seq.Empty() {
			var v int64
			if !seq.ReadASN1Integer(&v) {
				return false
			}
			if v == tlsFeatureStatusRequest {
				return true
			}
		}
	}
	return false
}

// revocationOptions tune checkRevocation. The zero value checks online with
// defaultRevocationTimeout per request.
type revocationOptions struct {
	// Now is the clock for freshness checks (Options.Now).
	Now time.Time
	// Offline skips OCSP and CRL fetching; the staple is still checked.
	Offline bool
	// Timeout bounds each HTTP request (also bounded by ctx).
	Timeout time.Duration
	// Client overrides the HTTP client (tests; an operator's egress policy).
	Client *http.Client
	// cache keeps verified answers until nextUpdate; nil keeps nothing.
	cache *expiringCache
}

// revocationInput is what the handshake gave us.
type revocationInput struct {
	Leaf   *x509.Certificate
	Issuer *x509.Certificate // nil when unknown: no OCSP request can be built
	// Staple is tls.ConnectionState.OCSPResponse (nil when none was stapled).
	Staple []byte
	// Intermediates are (cert, issuer) pairs above the leaf on the verified
	// path, checked the same way (minus stapling, which is leaf-only).
	Intermediates [][2]*x509.Certificate
}

// revocationResult is what checkRevocation found.
type revocationResult struct {
	Revocation Revocation
	// Stapled is true when the server stapled any OCSP response at all
	// (tls.ocsp_stapled); StapleVerified when it verified against the issuer.
	Stapled        bool
	StapleVerified bool
	// StapleResponse is the verified stapled response (for its SCTs).
	StapleResponse *ocsp.Response
	Findings       []Finding
}

// checkRevocation evaluates the staple and, unless opts.Offline, asks the
// OCSP responder and CRL named by the leaf (and by the intermediates). It
// never returns an error: every failure is a finding or a field.
func checkRevocation(ctx context.Context, in revocationInput, opts revocationOptions) revocationResult {
	var res revocationResult
	if in.Leaf == nil {
		res.Revocation = Revocation{Method: RevMethodNone, Status: RevStatusUnchecked, Error: "no certificate"}
		return res
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultRevocationTimeout
	}
	res.checkStaple(in, opts.Now)
	if opts.Offline {
		if !res.StapleVerified {
			res.Revocation = Revocation{Method: RevMethodNone, Status: RevStatusUnchecked, Error: "online revocation checking is off"}
		}
		res.Findings = append(res.Findings, revokedFindings(res.Revocation, "the certificate")...)
		return res
	}
	res.checkOnline(ctx, in, opts)
	return res
}

// checkStaple verifies the stapled response, if any, and says what is
// missing or wrong about stapling.
func (res *revocationResult) checkStaple(in revocationInput, now time.Time) {
	leaf := in.Leaf
	res.Stapled = len(in.Staple) > 0
	var stapleProblem string
	if res.Stapled {
		r, err := acceptOCSP(verifyOCSP(in.Staple, leaf, in.Issuer, now))
		switch {
		case err != nil:
			stapleProblem = err.Error()
		default:
			res.StapleVerified = true
			res.StapleResponse = r
			res.Revocation = revocationFromOCSP(r, RevMethodStaple, "stapled")
		}
	}
	switch {
	case !res.Stapled && hasMustStaple(leaf):
		res.Findings = append(res.Findings, NewFinding(CodeMustStapleMissing,
			"the certificate carries the TLS feature extension (OCSP must-staple) but the server stapled no OCSP response; Firefox and other must-staple clients refuse the connection"))
	case !res.Stapled && len(leaf.OCSPServer) > 0:
		// Only where stapling is possible at all: a certificate without an
		// OCSP URL (Let's Encrypt since 2025) cannot be stapled.
		res.Findings = append(res.Findings, NewFinding(CodeNoOCSPStaple,
			"the server does not staple an OCSP response, so clients that check revocation must ask "+leaf.OCSPServer[0]+" themselves"))
	case res.Stapled && !res.StapleVerified && hasMustStaple(leaf):
		res.Findings = append(res.Findings, NewFinding(CodeMustStapleMissing,
			"the certificate demands an OCSP staple and the stapled response is not valid: "+stapleProblem))
	}
	if stapleProblem != "" {
		res.Findings = append(res.Findings, NewFinding(CodeOCSPUnavailable,
			"the stapled OCSP response is not usable: "+stapleProblem))
	}
}

// revocationJob is the online check of one certificate.
type revocationJob struct {
	cert, issuer *x509.Certificate
	out          Revocation
	failures     []string
}

// checkOnline asks the sources named by the leaf and the intermediates,
// concurrently; a verified staple answers for the leaf.
func (res *revocationResult) checkOnline(ctx context.Context, in revocationInput, opts revocationOptions) {
	stapleAnswers := res.StapleVerified && res.Revocation.Status != RevStatusUnknown
	jobs := []*revocationJob{{cert: in.Leaf, issuer: in.Issuer}}
	for _, p := range in.Intermediates {
		if p[0] != nil && p[1] != nil && (len(p[0].OCSPServer) > 0 || len(p[0].CRLDistributionPoints) > 0) {
			jobs = append(jobs, &revocationJob{cert: p[0], issuer: p[1]})
		}
	}
	// Only the jobs that ask the network run on goroutines of their own,
	// and the last of those on this one: a certificate without an OCSP URL
	// or CRL (the common case) costs no goroutine, which matters on the
	// latency path of every check_tls.
	var wg sync.WaitGroup
	var inline *revocationJob
	for i, j := range jobs {
		if i == 0 && stapleAnswers {
			continue
		}
		if len(j.cert.OCSPServer) == 0 && len(j.cert.CRLDistributionPoints) == 0 {
			j.out, j.failures = checkOnline(ctx, j.cert, j.issuer, opts)
			continue
		}
		if prev := inline; prev != nil {
			wg.Go(func() { prev.out, prev.failures = checkOnline(ctx, prev.cert, prev.issuer, opts) })
		}
		inline = j
	}
	if inline != nil {
		inline.out, inline.failures = checkOnline(ctx, inline.cert, inline.issuer, opts)
	}
	wg.Wait()

	if !stapleAnswers {
		res.Revocation = jobs[0].out
	}
	for i, j := range jobs {
		what := "the certificate"
		if i > 0 {
			what = "the intermediate " + j.cert.Subject.String()
			j.out.Subject = j.cert.Subject.String()
			res.Revocation.Intermediates = append(res.Revocation.Intermediates, j.out)
		}
		if len(j.failures) > 0 {
			msg := "the revocation source named in " + what + " could not be used: " + strings.Join(j.failures, "; ")
			if j.out.Status == RevStatusGood || j.out.Status == RevStatusRevoked {
				msg += " (the " + j.out.Method + " answered instead)"
			}
			res.Findings = append(res.Findings, NewFinding(CodeOCSPUnavailable, msg))
		}
		if i > 0 {
			res.Findings = append(res.Findings, revokedFindings(j.out, what)...)
		}
	}
	res.Findings = append(res.Findings, revokedFindings(res.Revocation, "the certificate")...)
}

func revokedFindings(r Revocation, what string) []Finding {
	if r.Status != RevStatusRevoked {
		return nil
	}
	msg := fmt.Sprintf("%s is revoked according to %s (%s)", what, r.Method, r.Source)
	if r.RevokedAt != nil {
		msg += " since " + r.RevokedAt.UTC().Format(time.RFC3339)
	}
	if r.Reason != "" {
		msg += ", reason: " + r.Reason
	}
	return []Finding{NewFinding(CodeRevoked, msg)}
}

// checkOnline asks OCSP, then CRL when OCSP gave no verified answer. It
// returns the best verified answer and the failures met on the way.
func checkOnline(ctx context.Context, cert, issuer *x509.Certificate, opts revocationOptions) (Revocation, []string) {
	var failures []string
	if len(cert.OCSPServer) > 0 {
		if issuer == nil {
			failures = append(failures, "OCSP: the issuer certificate is unknown, so no request can be built")
		} else {
			for i, u := range cert.OCSPServer {
				if i >= maxRevocationURLs {
					break
				}
				r, err := queryOCSP(ctx, u, cert, issuer, opts)
				if err != nil {
					failures = append(failures, "OCSP "+u+": "+err.Error())
					continue
				}
				rev := revocationFromOCSP(r, RevMethodOCSP, u)
				if rev.Status == RevStatusUnknown {
					failures = append(failures, "OCSP "+u+": the responder answered \"unknown\" for this certificate")
					break
				}
				return rev, failures
			}
		}
	}
	if len(cert.CRLDistributionPoints) > 0 {
		if issuer == nil {
			failures = append(failures, "CRL: the issuer certificate is unknown, so the list cannot be verified")
		} else {
			for i, u := range cert.CRLDistributionPoints {
				if i >= maxRevocationURLs {
					break
				}
				rev, err := checkCRL(ctx, u, cert, issuer, opts)
				if err != nil {
					failures = append(failures, "CRL "+u+": "+err.Error())
					continue
				}
				return rev, failures
			}
		}
	}
	if len(cert.OCSPServer) == 0 && len(cert.CRLDistributionPoints) == 0 {
		return Revocation{Method: RevMethodNone, Status: RevStatusUnchecked, Error: "the certificate names no OCSP responder and no CRL"}, nil
	}
	return Revocation{Method: RevMethodNone, Status: RevStatusUnavailable, Error: strings.Join(failures, "; ")}, failures
}

func revocationFromOCSP(r *ocsp.Response, method, source string) Revocation {
	rev := Revocation{Method: method, Source: source}
	switch r.Status {
	case ocsp.Good:
		rev.Status = RevStatusGood
	case ocsp.Revoked:
		rev.Status = RevStatusRevoked
		t := r.RevokedAt
		rev.RevokedAt = &t
		rev.Reason = crlReason(r.RevocationReason)
	default:
		rev.Status = RevStatusUnknown
	}
	if !r.NextUpdate.IsZero() {
		t := r.NextUpdate
		rev.NextUpdate = &t
	}
	return rev
}

// verifyOCSP parses an OCSP response for cert and checks what
// ocsp.ParseResponseForCert leaves to the caller: that a delegated responder
// is authorised for OCSP signing, and that the response is fresh.
func verifyOCSP(der []byte, cert, issuer *x509.Certificate, now time.Time) (*ocsp.Response, error) {
	if issuer == nil {
		return nil, errors.New("the issuer certificate is unknown, so the response cannot be verified")
	}
	r, err := ocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil {
		var re ocsp.ResponseError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("the responder answered %q", re.Status.String())
		}
		return nil, fmt.Errorf("invalid response: %w", err)
	}
	weakDelegate := false
	if r.Certificate != nil {
		// ParseResponseForCert checked the delegate's signature; RFC 6960
		// §4.2.2.2 also requires the OCSPSigning key usage, without which any
		// certificate of the same CA could vouch for any other.
		weakDelegate = !slices.Contains(r.Certificate.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning)
		if now.After(r.Certificate.NotAfter) || now.Before(r.Certificate.NotBefore) {
			return nil, errors.New("signed by an expired (or not yet valid) responder certificate")
		}
	}
	if r.ThisUpdate.After(now.Add(ocspClockSkew)) {
		return nil, fmt.Errorf("thisUpdate %s is in the future", r.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !r.NextUpdate.IsZero() && now.After(r.NextUpdate.Add(ocspClockSkew)) {
		return nil, fmt.Errorf("stale: nextUpdate %s has passed", r.NextUpdate.UTC().Format(time.RFC3339))
	}
	if weakDelegate {
		return r, errWeakDelegate
	}
	return r, nil
}

// errWeakDelegate: the response is signed by a certificate the issuer
// signed, but that lacks the OCSP signing usage. Such a response may still
// say "revoked" (believing a false revocation costs a false alarm); it never
// counts as "good".
var errWeakDelegate = errors.New("signed by a delegated certificate without the OCSP signing usage")

// acceptOCSP applies that rule to verifyOCSP's outcome.
func acceptOCSP(r *ocsp.Response, err error) (*ocsp.Response, error) {
	if errors.Is(err, errWeakDelegate) && r != nil && r.Status == ocsp.Revoked {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// queryOCSP asks one responder, POST first (universally supported), GET when
// the responder rejects POST. Verified answers are cached until nextUpdate.
func queryOCSP(ctx context.Context, rawURL string, cert, issuer *x509.Certificate, opts revocationOptions) (*ocsp.Response, error) {
	if err := checkFetchURL(rawURL); err != nil {
		return nil, err
	}
	key := "ocsp|" + rawURL + "|" + certSHA256Hex(issuer) + "|" + cert.SerialNumber.String()
	if v, ok := opts.cache.get(key, opts.Now); ok {
		return v.(*ocsp.Response), nil
	}
	req, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	body, status, err := revocationFetch(ctx, http.MethodPost, rawURL, req, opts, maxOCSPResponseBytes)
	if err == nil && (status == http.StatusMethodNotAllowed || status == http.StatusNotFound) {
		getURL := strings.TrimSuffix(rawURL, "/") + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(req))
		body, status, err = revocationFetch(ctx, http.MethodGet, getURL, nil, opts, maxOCSPResponseBytes)
	}
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %d", status)
	}
	r, err := acceptOCSP(verifyOCSP(body, cert, issuer, opts.Now))
	if err != nil {
		return nil, err
	}
	opts.cache.put(key, r, cacheUntil(r.NextUpdate, opts.Now))
	return r, nil
}

// checkCRL fetches (or takes from cache) the CRL at rawURL, verifies it
// against issuer and looks cert up in it.
func checkCRL(ctx context.Context, rawURL string, cert, issuer *x509.Certificate, opts revocationOptions) (Revocation, error) {
	if err := checkFetchURL(rawURL); err != nil {
		return Revocation{}, err
	}
	key := "crl|" + rawURL
	var crl *x509.RevocationList
	if v, ok := opts.cache.get(key, opts.Now); ok {
		crl = v.(*x509.RevocationList)
	} else {
		body, status, err := revocationFetch(ctx, http.MethodGet, rawURL, nil, opts, maxCRLBytes)
		if err != nil {
			return Revocation{}, err
		}
		if status != http.StatusOK {
			return Revocation{}, fmt.Errorf("HTTP status %d", status)
		}
		if blk, _ := pem.Decode(body); blk != nil {
			// RFC 5280 wants DER; accept PEM all the same, as clients do.
			body = blk.Bytes
		}
		crl, err = x509.ParseRevocationList(body)
		if err != nil {
			return Revocation{}, fmt.Errorf("invalid CRL: %w", err)
		}
	}
	// The signature is checked on every use, not only when fetched: the
	// cache is keyed by URL, and a different issuer may point at it.
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return Revocation{}, fmt.Errorf("CRL not signed by the issuer: %w", err)
	}
	if !crl.NextUpdate.IsZero() && opts.Now.After(crl.NextUpdate.Add(ocspClockSkew)) {
		return Revocation{}, fmt.Errorf("stale: nextUpdate %s has passed", crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	opts.cache.put(key, crl, cacheUntil(crl.NextUpdate, opts.Now))
	rev := Revocation{Method: RevMethodCRL, Source: rawURL, Status: RevStatusGood}
	if !crl.NextUpdate.IsZero() {
		t := crl.NextUpdate
		rev.NextUpdate = &t
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			rev.Status = RevStatusRevoked
			t := e.RevocationTime
			rev.RevokedAt = &t
			rev.Reason = crlReason(e.ReasonCode)
			break
		}
	}
	return rev, nil
}

// checkFetchURL accepts only http(s) URLs: the URL comes from a certificate
// the server chose, so file:, ldap: and friends are refused.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("unsupported URL scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("URL without host")
	}
	return nil
}

// revocationFetch performs one bounded HTTP request. A body larger than max
// is an error, not a truncation: a truncated CRL would parse as garbage
// anyway, and the message should say why.
func revocationFetch(ctx context.Context, method, rawURL string, body []byte, opts revocationOptions, max int64) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	req.Header.Set("User-Agent", "tlswatch")
	client := opts.Client
	if client == nil {
		// A caller that brings no client gets the default outbound policy,
		// like every probe dial.
		client = newFetchClient(net.DefaultResolver, guardControl(nil, nil), nil)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// Our timeout or the probe's deadline, whichever came first.
			return nil, 0, fmt.Errorf("no answer after %s", time.Since(start).Round(time.Millisecond))
		}
		return nil, 0, fmt.Errorf("request failed: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, resp.StatusCode, fmt.Errorf("body not complete after %s", time.Since(start).Round(time.Millisecond))
		}
		return nil, resp.StatusCode, fmt.Errorf("read body: %w", err)
	}
	if int64(len(data)) > max {
		return nil, resp.StatusCode, fmt.Errorf("response larger than %d bytes", max)
	}
	return data, resp.StatusCode, nil
}

// cacheUntil bounds a cache entry's life by the source's nextUpdate, and by
// an hour so that a revocation published early is seen the same day.
func cacheUntil(next, now time.Time) time.Time {
	limit := now.Add(time.Hour)
	if next.IsZero() {
		return now.Add(5 * time.Minute)
	}
	if next.Before(limit) {
		return next
	}
	return limit
}

// crlReason names an RFC 5280 CRLReason.
func crlReason(code int) string {
	names := map[int]string{
		0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
		4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL",
		9: "privilegeWithdrawn", 10: "aACompromise",
	}
	if n, ok := names[code]; ok {
		return n
	}
	return fmt.Sprintf("reason %d", code)
}

// certSHA256Hex is a certificate's SHA-256 fingerprint in lower-case hex.
func certSHA256Hex(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return fmt.Sprintf("%x", sum[:])
}

// expiringCache is a small map of revocation answers, each kept until its
// expiry. It is safe for concurrent use; when full it drops the entry
// closest to expiry. A nil *expiringCache keeps nothing.
type expiringCache struct {
	mu  sync.Mutex
	m   map[string]expiringEntry
	max int
}

type expiringEntry struct {
	v       any
	expires time.Time
}

func (c *expiringCache) get(k string, now time.Time) (any, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.v, true
}

func (c *expiringCache) put(k string, v any, expires time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		var victim string
		var soonest time.Time
		for key, e := range c.m {
			if victim == "" || e.expires.Before(soonest) {
				victim, soonest = key, e.expires
			}
		}
		delete(c.m, victim)
	}
	c.m[k] = expiringEntry{v: v, expires: expires}
}
