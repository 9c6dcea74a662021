package testlab

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Scenario names accepted by Start. Each is one defect (or none) that
// tlswatch must diagnose.
const (
	ScenarioValid                = "valid"                         // P-256 leaf + intermediate, TLS 1.2-1.3
	ScenarioValidRSA             = "valid_rsa"                     // RSA-2048 leaf
	ScenarioIPSAN                = "ip_san"                        // leaf for IP 127.0.0.1; Host is "127.0.0.1"
	ScenarioExpired              = "expired"                       // leaf expired 3 days ago
	ScenarioNotYetValid          = "not_yet_valid"                 // leaf valid from Now+2 days
	ScenarioExpiring29d          = "expiring_29d"                  // 29 days 12 hours left
	ScenarioExpiring13d          = "expiring_13d"                  // 13 days 12 hours left
	ScenarioExpiring6d           = "expiring_6d"                   // 6 days 12 hours left
	ScenarioExpiring12h          = "expiring_12h"                  // 12 hours left (days_remaining 0)
	ScenarioShortLivedFresh      = "short_lived_fresh"             // 9-day certificate issued 1 day ago (quiet)
	ScenarioShortLivedOverdue    = "short_lived_overdue"           // 9-day certificate issued 7 days ago (renewal overdue)
	ScenarioIntermediateExpiring = "intermediate_expiring"         // valid leaf under an intermediate with 20 days left
	ScenarioWrongHost            = "wrong_host"                    // leaf for other.test
	ScenarioWildcard             = "wildcard"                      // *.tlswatch.test probed as api.tlswatch.test (valid)
	ScenarioWildcardTwoLevels    = "wildcard_two_levels"           // *.tlswatch.test probed as a.b.tlswatch.test (mismatch)
	ScenarioCNOnly               = "cn_only"                       // no SAN extension, CN = host
	ScenarioSelfSigned           = "self_signed"                   // leaf signs itself
	ScenarioUntrustedRoot        = "untrusted_root"                // leaf + intermediate + root of an unknown CA
	ScenarioPrivateCA            = "private_ca"                    // leaf + intermediate of an unknown CA, root not served
	ScenarioMissingIntermediate  = "missing_intermediate"          // leaf alone; AIA URL serves the intermediate
	ScenarioMissingDeadAIA       = "missing_intermediate_dead_aia" // leaf alone; its AIA URL refuses connections
	ScenarioUntrustedDirect      = "untrusted_root_direct"         // leaf signed directly by an unknown root, served alone, no AIA
	ScenarioExpiredIntermediate  = "expired_intermediate"          // served intermediate expired yesterday
	ScenarioRootServed           = "root_served"                   // leaf + intermediate + trusted root
	ScenarioChainOrder           = "chain_order"                   // leaf, unrelated CA, intermediate
	ScenarioChainDuplicate       = "chain_duplicate"               // leaf, intermediate, intermediate
	ScenarioLegacyAccepted       = "legacy_accepted"               // TLS 1.0-1.3 accepted
	ScenarioTLS10Only            = "tls10_only"                    // TLS 1.0 only
	ScenarioRSA1024              = "rsa1024"                       // RSA-1024 leaf key
	ScenarioWeakEC               = "weak_ec"                       // intermediate with a P-224 key
	ScenarioSHA1                 = "sha1"                          // leaf signed with ECDSA-SHA1
	ScenarioClientCertRequired   = "client_cert_required"          // server demands a client cert from the Root
	ScenarioMustStaple           = "must_staple"                   // leaf with must-staple, no staple served
	ScenarioRefused              = "refused"                       // nothing listens
	ScenarioNeverAnswers         = "never_answers"                 // accepts, never speaks
	ScenarioPlainHTTP            = "plain_http"                    // plain HTTP on the port
)

// ScenarioNames lists every scenario Start knows, in a stable order.
func ScenarioNames() []string {
	return []string{
		ScenarioValid, ScenarioValidRSA, ScenarioIPSAN, ScenarioExpired, ScenarioNotYetValid,
		ScenarioExpiring29d, ScenarioExpiring13d, ScenarioExpiring6d, ScenarioExpiring12h,
		ScenarioShortLivedFresh, ScenarioShortLivedOverdue, ScenarioIntermediateExpiring,
		ScenarioWrongHost, ScenarioWildcard, ScenarioWildcardTwoLevels, ScenarioCNOnly,
		ScenarioSelfSigned, ScenarioUntrustedRoot, ScenarioPrivateCA, ScenarioMissingIntermediate,
		ScenarioMissingDeadAIA, ScenarioUntrustedDirect, ScenarioExpiredIntermediate, ScenarioRootServed, ScenarioChainOrder,
		ScenarioChainDuplicate, ScenarioLegacyAccepted, ScenarioTLS10Only, ScenarioRSA1024,
		ScenarioWeakEC, ScenarioSHA1, ScenarioClientCertRequired, ScenarioMustStaple,
		ScenarioRefused, ScenarioNeverAnswers, ScenarioPlainHTTP,
	}
}

// Scenario is a running lab endpoint. Probe Host (for SNI and the name
// check) on Port, dialling IP; trust Roots; classify at Now.
type Scenario struct {
	Name   string
	Host   string // name to check and send as SNI
	IP     string // always 127.0.0.1: the address to dial instead of resolving Host
	Port   int
	Addr   string // IP:Port
	Target string // Host:Port, what an agent would type (with ip = IP)

	Roots *x509.CertPool // trusted roots of the PKI (Root only)
	Now   time.Time      // the PKI's clock

	Cert    *tls.Certificate // what the server presents; nil for network scenarios
	Config  *tls.Config      // the server config; nil for network scenarios
	AIAURL  string           // caIssuers URL in the leaf, when any
	AIAHits *atomic.Int64    // requests the AIA server got
}

// Start runs the named scenario on 127.0.0.1 and returns it. Unknown names
// fail the test. Servers close on t.Cleanup.
func Start(t testing.TB, p *PKI, name string) *Scenario {
	t.Helper()
	sc := &Scenario{Name: name, Host: DefaultHost, IP: "127.0.0.1", Roots: p.Roots(), Now: p.Now}
	var cfg *tls.Config
	var addr string
	if o, ok := leafOnly(p, name); ok {
		c := p.Leaf(o)
		sc.Cert = &c
	} else {
		cfg, addr = sc.special(t, p)
	}
	switch name {
	case ScenarioIPSAN:
		sc.Host = "127.0.0.1"
	case ScenarioWildcard:
		sc.Host = "api." + DefaultHost
	case ScenarioWildcardTwoLevels:
		sc.Host = "a.b." + DefaultHost
	}
	if sc.Cert != nil {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg.Certificates = []tls.Certificate{*sc.Cert}
		cfg.NextProtos = []string{"h2", "http/1.1"}
		sc.Config = cfg
		addr = ServeTLS(t, cfg)
	}
	sc.setAddr(addr)
	return sc
}

// leafOnly gives the leaf of the scenarios that serve one certificate with
// the server's defaults.
func leafOnly(p *PKI, name string) (LeafOpts, bool) {
	day := 24 * time.Hour
	switch name {
	case ScenarioValid:
		return LeafOpts{}, true
	case ScenarioValidRSA:
		return LeafOpts{Key: KeyRSA2048}, true
	case ScenarioIPSAN:
		return LeafOpts{IPs: []net.IP{net.ParseIP("127.0.0.1")}}, true
	case ScenarioExpired:
		return LeafOpts{NotBefore: p.Now.Add(-93 * day), NotAfter: p.Now.Add(-3 * day)}, true
	case ScenarioNotYetValid:
		return LeafOpts{NotBefore: p.Now.Add(2 * day), NotAfter: p.Now.Add(92 * day)}, true
	case ScenarioExpiring29d:
		return LeafOpts{NotAfter: p.Now.Add(29*day + 12*time.Hour)}, true
	case ScenarioExpiring13d:
		return LeafOpts{NotAfter: p.Now.Add(13*day + 12*time.Hour)}, true
	case ScenarioExpiring6d:
		return LeafOpts{NotAfter: p.Now.Add(6*day + 12*time.Hour)}, true
	case ScenarioExpiring12h:
		return LeafOpts{NotAfter: p.Now.Add(12 * time.Hour)}, true
	case ScenarioShortLivedFresh:
		return LeafOpts{NotBefore: p.Now.Add(-1 * day), NotAfter: p.Now.Add(8*day - time.Second)}, true
	case ScenarioShortLivedOverdue:
		return LeafOpts{NotBefore: p.Now.Add(-7 * day), NotAfter: p.Now.Add(2*day - time.Second)}, true
	case ScenarioIntermediateExpiring:
		// A leaf valid for 60 more days under an intermediate that dies in
		// 20: the chain stops working first.
		short := p.NewIntermediate(p.Root, CAOpts{CommonName: "tlswatch Expiring Intermediate CA", NotAfter: p.Now.Add(20 * day)})
		return LeafOpts{Issuer: short, NotBefore: p.Now.Add(-30 * day), NotAfter: p.Now.Add(60 * day)}, true
	case ScenarioWrongHost:
		return LeafOpts{DNSNames: []string{"other.test"}}, true
	case ScenarioWildcard, ScenarioWildcardTwoLevels:
		return LeafOpts{DNSNames: []string{"*." + DefaultHost}}, true
	case ScenarioCNOnly:
		return LeafOpts{NoSAN: true, CommonName: DefaultHost}, true
	case ScenarioSelfSigned:
		return LeafOpts{SelfSigned: true}, true
	case ScenarioUntrustedRoot:
		return LeafOpts{Issuer: p.UntrustedIntermediate,
			Chain: []*x509.Certificate{p.UntrustedIntermediate.Cert, p.UntrustedRoot.Cert}}, true
	case ScenarioPrivateCA:
		return LeafOpts{Issuer: p.UntrustedIntermediate}, true
	case ScenarioUntrustedDirect:
		return LeafOpts{Issuer: p.UntrustedRoot, Chain: []*x509.Certificate{}}, true
	case ScenarioRootServed:
		return LeafOpts{Chain: []*x509.Certificate{p.Intermediate.Cert, p.Root.Cert}}, true
	case ScenarioChainOrder:
		return LeafOpts{Chain: []*x509.Certificate{p.UntrustedIntermediate.Cert, p.Intermediate.Cert}}, true
	case ScenarioChainDuplicate:
		return LeafOpts{Chain: []*x509.Certificate{p.Intermediate.Cert, p.Intermediate.Cert}}, true
	case ScenarioRSA1024:
		return LeafOpts{Key: KeyRSA1024}, true
	case ScenarioSHA1:
		return LeafOpts{SignatureAlgorithm: x509.ECDSAWithSHA1}, true
	case ScenarioMustStaple:
		return LeafOpts{MustStaple: true}, true
	}
	return LeafOpts{}, false
}

// special sets up the scenarios that need more than one leaf: their own
// server settings, a CA of their own, an AIA server, or no TLS at all. It
// returns the server config (nil for the defaults) or, without TLS, the
// address.
func (sc *Scenario) special(t testing.TB, p *PKI) (*tls.Config, string) {
	day := 24 * time.Hour
	leaf := func(o LeafOpts) *tls.Certificate { c := p.Leaf(o); return &c }
	switch sc.Name {
	case ScenarioMissingIntermediate:
		sc.AIAHits = new(atomic.Int64)
		sc.AIAURL = ServeAIA(t, p.Intermediate.Cert, sc.AIAHits)
		sc.Cert = leaf(LeafOpts{AIAURL: sc.AIAURL, Chain: []*x509.Certificate{}})
	case ScenarioMissingDeadAIA:
		sc.AIAURL = "http://" + RefusedAddr(t) + "/issuer.crt"
		sc.Cert = leaf(LeafOpts{AIAURL: sc.AIAURL, Chain: []*x509.Certificate{}})
	case ScenarioExpiredIntermediate:
		old := p.NewIntermediate(p.Root, CAOpts{CommonName: "tlswatch Expired Intermediate CA",
			NotBefore: p.Now.Add(-400 * day), NotAfter: p.Now.Add(-1 * day)})
		sc.Cert = leaf(LeafOpts{Issuer: old, Chain: []*x509.Certificate{old.Cert}})
	case ScenarioWeakEC:
		// Go's TLS stack cannot sign with P-224, so the weak EC key sits in
		// the served intermediate instead of the leaf.
		weak := p.NewIntermediate(p.Root, CAOpts{CommonName: "tlswatch P-224 Intermediate CA", Key: KeyECDSAP224})
		sc.Cert = leaf(LeafOpts{Issuer: weak, Chain: []*x509.Certificate{weak.Cert}})
	case ScenarioLegacyAccepted:
		sc.Cert = leaf(LeafOpts{})
		return &tls.Config{MinVersion: tls.VersionTLS10}, ""
	case ScenarioTLS10Only:
		sc.Cert = leaf(LeafOpts{})
		return &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, ""
	case ScenarioClientCertRequired:
		sc.Cert = leaf(LeafOpts{})
		return &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.Roots()}, ""
	case ScenarioRefused:
		return nil, RefusedAddr(t)
	case ScenarioNeverAnswers:
		return nil, NeverAnswers(t)
	case ScenarioPlainHTTP:
		return nil, PlainHTTP(t)
	default:
		t.Fatalf("testlab: unknown scenario %q", sc.Name)
	}
	return nil, ""
}

// StartWith serves a certificate of the caller's with an optional config
// (nil: TLS 1.2+ defaults), as a Scenario named "custom".
func StartWith(t testing.TB, p *PKI, cert tls.Certificate, cfg *tls.Config) *Scenario {
	t.Helper()
	sc := &Scenario{Name: "custom", Host: DefaultHost, IP: "127.0.0.1", Roots: p.Roots(), Now: p.Now, Cert: &cert}
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	cfg.Certificates = []tls.Certificate{cert}
	sc.Config = cfg
	sc.setAddr(ServeTLS(t, cfg))
	return sc
}

func (sc *Scenario) setAddr(addr string) {
	host, port, _ := net.SplitHostPort(addr)
	sc.Addr = addr
	sc.IP = host
	sc.Port, _ = strconv.Atoi(port)
	sc.Target = net.JoinHostPort(sc.Host, port)
}
