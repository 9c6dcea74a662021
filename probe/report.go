package probe

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Status is the one-word verdict of a Report. The rule (DESIGN.md): down when
// the endpoint is not reachable or not trusted, otherwise the highest finding
// severity (critical, warning), else ok.
type Status string

const (
	StatusOK       Status = "ok"
	StatusWarning  Status = "warning"
	StatusCritical Status = "critical"
	StatusDown     Status = "down"
)

// Severity ranks a Finding. It is also the level of whatever is said about
// a Report elsewhere (a watch event, an alert, an MCP log message): the
// three values and their order are the same.
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Rank orders severities so callers can take a maximum: info < warning < critical.
func (s Severity) Rank() int {
	switch s {
	case SeverityCritical:
		return 3
	case SeverityWarning:
		return 2
	case SeverityInfo:
		return 1
	}
	return 0
}

// Severity is the level of a status: info for ok, warning for warning,
// critical for critical and down.
func (s Status) Severity() Severity {
	switch s {
	case StatusOK:
		return SeverityInfo
	case StatusWarning:
		return SeverityWarning
	}
	return SeverityCritical
}

// Stage is the expiry stage of a Report: "none", the reached threshold with
// the least time left in its canonical form ("30d", "36h", "20%"; see
// ExpiryStage), or "expired".
type Stage string

const (
	StageNone    Stage = "none"
	StageExpired Stage = "expired"
)

// Days returns the threshold of a day stage such as "30d"; ok is false for
// none, expired, hour and percent stages and anything else.
func (s Stage) Days() (days int, ok bool) {
	n, found := strings.CutSuffix(string(s), "d")
	if !found || n == "" || strings.TrimLeft(n, "0123456789") != "" {
		return 0, false
	}
	d, err := strconv.Atoi(n)
	return d, err == nil
}

// Threshold returns the threshold a stage names; ok is false for none,
// expired and anything that is not a canonical threshold.
func (s Stage) Threshold() (Threshold, bool) {
	t, err := ParseThreshold(string(s))
	return t, err == nil
}

// Report is the outcome of one probe. Its JSON is the contract of DESIGN.md
// (structuredContent of check_tls, and what a watch stores): field names are
// exact. Fields beyond the contract are additive and omitted when empty.
type Report struct {
	Target      TargetInfo `json:"target"`
	CheckedAt   time.Time  `json:"checked_at"`
	Status      Status     `json:"status"`
	Reachable   bool       `json:"reachable"`
	Trusted     bool       `json:"trusted"`
	ExpiryStage Stage      `json:"expiry_stage"`
	Findings    []Finding  `json:"findings"`
	TLS         *TLSInfo   `json:"tls,omitempty"`
	Leaf        *CertInfo  `json:"leaf,omitempty"`
	Chain       *ChainInfo `json:"chain,omitempty"`
	Timing      Timing     `json:"timing_ms"`

	// Deeper diagnostics; absent when not run.
	Addresses    []AddressResult `json:"addresses,omitempty"`
	Protocols    []ProtocolInfo  `json:"protocols,omitempty"`
	TrustStores  []TrustVerdict  `json:"trust_stores,omitempty"`
	Revocation   *Revocation     `json:"revocation,omitempty"`
	SCTCount     *int            `json:"sct_count,omitempty"`
	CipherSuites []CipherInfo    `json:"cipher_suites,omitempty"`
	ClientCert   *CertInfo       `json:"client_cert,omitempty"`
	NotTested    []string        `json:"not_tested,omitempty"`

	// Additive fields.
	SCTs  []SCTInfo    `json:"scts,omitempty"`   // each SCT counted in SCTCount, with its source
	NoSNI *NoSNIResult `json:"no_sni,omitempty"` // the certificate served without SNI (deep)
	// MozillaProfile is the Mozilla server-side TLS profile (version 5.7)
	// that every protocol and suite the server accepts fits in: modern,
	// intermediate, old or none; set by the deep scan.
	MozillaProfile string       `json:"mozilla_profile,omitempty"`
	RenewalInfo    *RenewalInfo `json:"renewal_info,omitempty"` // the CA's suggested renewal window (ACME ARI)
	CAA            *CAAInfo     `json:"caa,omitempty"`          // the CAA records that govern the next renewal
	// MCP is the MCP level of a probe of an MCP-level watch (mcp.go): set
	// when the endpoint answered as an MCP server over a trusted
	// connection, nil otherwise and on every other probe.
	MCP *MCPInfo `json:"mcp,omitempty"`
}

// RenewalInfo is the CA's suggested renewal window for the leaf (ACME
// Renewal Information, RFC 9773), or why it is unknown.
type RenewalInfo struct {
	CA             string     `json:"ca"`
	Directory      string     `json:"directory"`
	URL            string     `json:"url,omitempty"` // the renewalInfo resource asked
	WindowStart    *time.Time `json:"window_start,omitempty"`
	WindowEnd      *time.Time `json:"window_end,omitempty"`
	ExplanationURL string     `json:"explanation_url,omitempty"`
	Error          string     `json:"error,omitempty"`
}

// CAAInfo is what the CAA records say about the next renewal of the leaf.
type CAAInfo struct {
	CA         string     `json:"ca,omitempty"`         // the leaf's CA, when tlswatch knows it
	Identities []string   `json:"identities,omitempty"` // the CAA issuer names of that CA
	Names      []CAACheck `json:"names"`
}

// CAACheck is the CAA verdict for one certificate name.
type CAACheck struct {
	Name      string   `json:"name"`                 // as the certificate names it: "mcp.example.com", "*.example.com"
	RecordsAt string   `json:"records_at,omitempty"` // the domain whose records apply; empty: none up the tree
	Records   []string `json:"records,omitempty"`    // zone-file form: 0 issue "letsencrypt.org"
	Permitted *bool    `json:"permitted,omitempty"`  // absent when the CA is unknown or the lookup failed
	Error     string   `json:"error,omitempty"`
}

// TargetInfo is what was probed: the host used for SNI and name checks, the
// port, the SNI actually sent and the IP actually dialled.
type TargetInfo struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	SNI  string `json:"sni"`
	IP   string `json:"ip"`
	// Scheme is the STARTTLS protocol spoken before TLS ("imap"); empty for
	// direct TLS.
	Scheme string `json:"scheme,omitempty"`
}

// String is the one way a target is written: host:port, with brackets
// around an IPv6 address, after the STARTTLS scheme when there is one
// ("imap://mail.example.com:143").
func (t TargetInfo) String() string {
	hp := net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	if t.Scheme != "" {
		return t.Scheme + "://" + hp
	}
	return hp
}

// Finding is one diagnosed fact. Code is stable (clients switch on it);
// Message is for people and names the evidence.
type Finding struct {
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// TLSInfo describes the negotiated connection.
type TLSInfo struct {
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	ALPN        string `json:"alpn"`
	OCSPStapled bool   `json:"ocsp_stapled"`
}

// CertInfo is the analysis of one certificate. The leaf of a Report carries
// the DESIGN.md fields; inspect_chain fills the rest for every certificate.
type CertInfo struct {
	Subject            string    `json:"subject"`
	Issuer             string    `json:"issuer"`
	SANs               []string  `json:"sans"`
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	DaysRemaining      int       `json:"days_remaining"`
	Serial             string    `json:"serial"`
	SHA256             string    `json:"sha256"`
	Key                string    `json:"key"`
	SignatureAlgorithm string    `json:"signature_algorithm"`

	IsCA        bool     `json:"is_ca"`
	SelfSigned  bool     `json:"self_signed"`
	IssuingURLs []string `json:"aia_ca_issuers,omitempty"`
	OCSPServers []string `json:"ocsp_servers,omitempty"`
	CRLURLs     []string `json:"crl_urls,omitempty"`
	SCTCount    int      `json:"sct_count"`
	MustStaple  bool     `json:"must_staple,omitempty"`
	PEM         string   `json:"pem,omitempty"`
}

// ChainInfo summarises the served chain and the path a client would build.
type ChainInfo struct {
	Served       int      `json:"served"`
	Complete     bool     `json:"complete"`
	VerifiedPath []string `json:"verified_path"`

	// Additive: the earliest not_after of any certificate on the path
	// clients use, leaf included (when it is not the leaf's, the chain
	// dies first), and each of those certificates' validity, leaf first.
	EarliestNotAfter *time.Time     `json:"earliest_not_after,omitempty"`
	Validity         []CertValidity `json:"validity,omitempty"`
}

// CertValidity is one certificate's validity period.
type CertValidity struct {
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Timing is in milliseconds.
type Timing struct {
	DNS       float64 `json:"dns"`
	Connect   float64 `json:"connect"`
	Handshake float64 `json:"handshake"`
	Total     float64 `json:"total"`
}

// AddressResult is the verdict for one resolved address of the host.
type AddressResult struct {
	IP        string     `json:"ip"`
	Status    Status     `json:"status"`
	Reachable bool       `json:"reachable"`
	Trusted   bool       `json:"trusted"`
	SHA256    string     `json:"sha256,omitempty"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
	Codes     []string   `json:"codes,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// ProtocolInfo says whether one protocol version is accepted.
type ProtocolInfo struct {
	Version  string `json:"version"`
	Accepted bool   `json:"accepted"`
	Tested   bool   `json:"tested"`
}

// TrustVerdict says whether one trust store verifies the chain.
type TrustVerdict struct {
	Store   string `json:"store"`
	Trusted bool   `json:"trusted"`
	Error   string `json:"error,omitempty"`
}

// Revocation is the outcome of OCSP/CRL checking for the leaf.
type Revocation struct {
	Method    string     `json:"method"` // ocsp, crl, staple
	Status    string     `json:"status"` // good, revoked, unknown, unavailable
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Source    string     `json:"source,omitempty"`
	Error     string     `json:"error,omitempty"`

	// Additive fields.
	Reason        string       `json:"reason,omitempty"`      // CRL reason of a revocation
	NextUpdate    *time.Time   `json:"next_update,omitempty"` // when the answer goes stale
	Subject       string       `json:"subject,omitempty"`     // set on Intermediates entries
	Intermediates []Revocation `json:"intermediates,omitempty"`
}

// CipherInfo is one accepted cipher suite for a protocol version.
type CipherInfo struct {
	Version string `json:"version"`
	Name    string `json:"name"`
	// Weak: no Mozilla profile allows the suite (Profile "none").
	Weak bool `json:"weak"`
	// Reason says why the suite misses a better profile.
	Reason string `json:"reason,omitempty"`
	// Profile is the most demanding Mozilla profile that allows the suite:
	// modern, intermediate, old, or none.
	Profile string `json:"profile,omitempty"`
	// DHBits is the size of the server's Diffie-Hellman group (DHE suites).
	DHBits int `json:"dh_bits,omitempty"`
}

// finalize sorts findings and derives the status.
func finalize(r *Report) {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	SortFindings(r.Findings)
	r.Status = StatusOf(*r)
}

// SortFindings is the one order of findings: most severe first, otherwise
// as found.
func SortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int { return b.Severity.Rank() - a.Severity.Rank() })
}

// StatusOf applies the DESIGN.md rule: down when not reachable or not
// trusted, otherwise the highest finding severity (critical, warning), else ok.
// Callers that add findings to a Report recompute Status with it.
func StatusOf(r Report) Status {
	if !r.Reachable || !r.Trusted {
		return StatusDown
	}
	return severityStatus(r.Findings)
}

// severityStatus is the highest finding severity as a Status, ok when none.
func severityStatus(findings []Finding) Status {
	top := 0
	for _, f := range findings {
		if f.Severity.Rank() > top {
			top = f.Severity.Rank()
		}
	}
	switch {
	case top >= SeverityCritical.Rank():
		return StatusCritical
	case top >= SeverityWarning.Rank():
		return StatusWarning
	}
	return StatusOK
}
