package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/netpolicy"
)

// The outbound policy. No test here ever sends a packet to
// 169.254.169.254: the policy refuses it in net.Dialer.Control, before
// connect(2), and countingControl (which runs after the policy) proves the
// dial got no further.

var metadata = netip.MustParseAddr("169.254.169.254")

// countingControl counts the dials that passed the policy, by address.
type countingControl struct {
	mu    sync.Mutex
	dials []string
}

func (c *countingControl) control(network, address string, _ syscall.RawConn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dials = append(c.dials, address)
	if strings.HasPrefix(address, "169.254.") || strings.HasPrefix(address, "[fe80:") || strings.HasPrefix(address, "[fd00:ec2:") {
		// Never reached: the policy runs first. Refuse anyway so that a
		// broken policy cannot make this test touch the metadata address.
		return fmt.Errorf("test guard: %s passed the policy", address)
	}
	return nil
}

func (c *countingControl) passed() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.dials...)
}

// seqResolver answers the i-th lookup with answers[min(i, len-1)] and
// counts lookups.
type seqResolver struct {
	n       atomic.Int64
	answers [][]netip.Addr
}

func (s *seqResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	i := int(s.n.Add(1)) - 1
	return s.answers[min(i, len(s.answers)-1)], nil
}

func wantBlocked(t *testing.T, r Report, addr string) {
	t.Helper()
	f, ok := findingsOf(r)[CodeTargetBlocked]
	if !ok || f.Severity != SeverityCritical || !strings.Contains(f.Message, addr) {
		t.Fatalf("findings %v: want target_blocked (critical) naming %s", r.Findings, addr)
	}
	if r.Status != StatusDown || r.Reachable || r.Trusted {
		t.Errorf("status %s reachable %v trusted %v: want down, unreachable", r.Status, r.Reachable, r.Trusted)
	}
	for _, f := range r.Findings {
		if f.Code == CodeTimeout || f.Code == CodeConnectionRefused {
			t.Errorf("a refused dial also reported as %s: %s", f.Code, f.Message)
		}
	}
}

// TestPolicyRefusesMetadata: the default options (nil Policy) refuse the
// metadata and link-local addresses whether they come from the ip field,
// the target itself or a DNS answer, before any packet.
func TestPolicyRefusesMetadata(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   Target
		resolver Resolver
		addr     string
	}{
		{"ip field", Target{Host: "mcp.example.com", IP: metadata.String(), Port: 443}, nil, "169.254.169.254"},
		{"literal", Target{Host: "169.254.169.254", Port: 80}, nil, "169.254.169.254"},
		{"dns answer", Target{Host: "metadata.example", Port: 443}, fixedResolver{metadata}, "169.254.169.254"},
		{"ipv4-mapped dns answer", Target{Host: "metadata.example", Port: 443}, fixedResolver{netip.MustParseAddr("::ffff:169.254.169.254")}, "169.254.169.254"},
		{"aws ipv6 metadata", Target{Host: "metadata.example", Port: 443}, fixedResolver{netip.MustParseAddr("fd00:ec2::254")}, "fd00:ec2::254"},
		{"ipv6 link-local", Target{Host: "fe80::1", Port: 443}, nil, "fe80::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cc countingControl
			tc.target.Timeout = 1500 * time.Millisecond
			start := time.Now()
			r, err := Run(context.Background(), tc.target, Options{Resolver: tc.resolver, Control: cc.control, Deep: true})
			if err != nil {
				t.Fatal(err)
			}
			wantBlocked(t, r, tc.addr)
			if d := cc.passed(); len(d) != 0 {
				t.Errorf("dials passed the policy: %v", d)
			}
			if d := time.Since(start); d > 3*time.Second { // no connect, no wait: milliseconds normally
				t.Errorf("a refused target took %v", d)
			}
		})
	}
}

// TestPolicyCheckedAtDialTime: a name that answered 127.0.0.1 a moment ago
// and now answers 169.254.169.254 (DNS rebinding) is refused: nothing is
// remembered from an earlier answer, the dialled address is what counts.
func TestPolicyCheckedAtDialTime(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioValid)
	res := &seqResolver{answers: [][]netip.Addr{{netip.MustParseAddr("127.0.0.1")}, {metadata}}}
	tg := Target{Host: testlab.DefaultHost, Port: sc.Port, Timeout: 3 * time.Second}
	var cc countingControl
	opts := Options{Now: pki.Now, Roots: pki.Roots(), Resolver: res, Control: cc.control, NoRevocation: true}

	first, err := Run(context.Background(), tg, opts)
	if err != nil || first.Status != StatusOK || first.Target.IP != "127.0.0.1" {
		t.Fatalf("first probe: %v, status %s, ip %s, findings %v", err, first.Status, first.Target.IP, codesOf(first))
	}
	before := len(cc.passed())
	second, err := Run(context.Background(), tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantBlocked(t, second, "169.254.169.254")
	if second.Target.IP != "169.254.169.254" {
		t.Errorf("report ip %q", second.Target.IP)
	}
	if after := cc.passed(); len(after) != before {
		t.Errorf("the rebinding probe dialled %v", after[before:])
	}
	if n := res.n.Load(); n != 2 {
		t.Errorf("%d lookups, want 2 (one per probe)", n)
	}
}

// TestPolicyField: Options.Policy plugs an operator's policy in; loopback is
// allowed by default and refused with DenyPrivate unless allowed again.
func TestPolicyField(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioValid)
	deny, err := netpolicy.New(netpolicy.Config{DenyPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	allow, err := netpolicy.New(netpolicy.Config{DenyPrivate: true, AllowCIDRs: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		policy  *netpolicy.Policy
		blocked bool
	}{
		{"default allows loopback", nil, false},
		{"deny-private", deny, true},
		{"deny-private with allow-cidr", allow, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cc countingControl
			// Deep: the cipher scan and the handshake without SNI dial too.
			r, err := Run(context.Background(), labTarget(sc), Options{Now: pki.Now, Roots: pki.Roots(), Policy: tc.policy, Control: cc.control, Deep: true})
			if err != nil {
				t.Fatal(err)
			}
			if tc.blocked {
				wantBlocked(t, r, "127.0.0.1")
				if d := cc.passed(); len(d) != 0 {
					t.Errorf("dials passed the policy: %v", d)
				}
				if len(r.CipherSuites) != 0 || (r.NoSNI != nil && r.NoSNI.Reachable) {
					t.Errorf("deep scans reached a refused address: ciphers %v nosni %+v", r.CipherSuites, r.NoSNI)
				}
				return
			}
			if r.Status != StatusOK || !r.Reachable {
				t.Errorf("status %s findings %v", r.Status, codesOf(r))
			}
			if d := cc.passed(); len(d) < 3 {
				t.Errorf("only %d dials went through Control; the deep scans must use it too", len(d))
			}
		})
	}
}

// TestPolicyOtherAddresses: a host whose DNS answer mixes a lab address
// and the metadata address is probed on the first, the second is refused
// and reported, not dialled, and not mistaken for a dead backend.
func TestPolicyOtherAddresses(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioValid)
	var cc countingControl
	tg := Target{Host: testlab.DefaultHost, Port: sc.Port, Timeout: 3 * time.Second}
	r, err := Run(context.Background(), tg, Options{Now: pki.Now, Roots: pki.Roots(), Control: cc.control, NoRevocation: true,
		Resolver: fixedResolver{netip.MustParseAddr("127.0.0.1"), metadata}})
	if err != nil {
		t.Fatal(err)
	}
	f, ok := findingsOf(r)[CodeTargetBlocked]
	if !ok || !strings.Contains(f.Message, "169.254.169.254") || !r.Reachable || !r.Trusted || r.Status != StatusCritical {
		t.Errorf("status %s reachable %v findings %v: want target_blocked for the other address", r.Status, r.Reachable, r.Findings)
	}
	if hasCode(r.Findings, CodeInconsistentBackends) {
		t.Errorf("a refused address counted as a dead backend: %v", r.Findings)
	}
	if len(r.Addresses) != 2 || !strings.Contains(strings.Join(r.Addresses[1].Codes, ","), CodeTargetBlocked) {
		t.Errorf("addresses %+v", r.Addresses)
	}
	for _, d := range cc.passed() {
		if !strings.HasPrefix(d, "127.0.0.1:") {
			t.Errorf("dialled %s", d)
		}
	}
}

// TestPolicyFetches: AIA and OCSP fetches obey the policy, on the first
// request and on every redirect; their host names are resolved with the
// probe's Resolver, at dial time.
func TestPolicyFetches(t *testing.T) {
	pki := testlab.NewPKI(t)
	ctx := context.Background()
	var hits atomic.Int64
	okAIA := testlab.ServeAIA(t, pki.Intermediate.Cert, &hits)
	_, aiaPort := splitLab(t, strings.TrimPrefix(strings.TrimSuffix(okAIA, "/issuer.crt"), "http://"))
	for _, tc := range []struct {
		name string
		url  string
		res  Resolver
	}{
		{"direct", "http://169.254.169.254/latest/meta-data/", nil},
		{"redirect", testlab.ServeAIARedirect(t, "http://169.254.169.254/latest/meta-data/", nil), nil},
		{"redirect to a name", testlab.ServeAIARedirect(t, "http://rebind.example/ca.crt", nil), fixedResolver{metadata}},
		// The name answered 127.0.0.1 when someone looked; at dial time it
		// is the metadata address.
		{"name rebinding", fmt.Sprintf("http://aia.example:%d/issuer.crt", aiaPort),
			&seqResolver{answers: [][]netip.Addr{{metadata}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cc countingControl
			leaf := pki.Leaf(testlab.LeafOpts{AIAURL: tc.url, Chain: []*x509.Certificate{}})
			cr, err := AnalyzePEM(ctx, testlab.ChainPEM(leaf), "", Options{Now: pki.Now, Roots: pki.Roots(), Resolver: tc.res, Control: cc.control})
			if err != nil {
				t.Fatal(err)
			}
			if len(cr.AIAFetched) == 0 || !strings.Contains(cr.AIAFetched[0].Error, "blocked by policy") {
				t.Errorf("aia %+v: want a policy refusal", cr.AIAFetched)
			}
			if f := findingsOf(cr.Report)[CodeIncompleteChain]; !strings.Contains(f.Message, "blocked by policy") {
				t.Errorf("findings %v: the incomplete_chain message should say why AIA failed", cr.Findings)
			}
			for _, d := range cc.passed() {
				if !strings.HasPrefix(d, "127.0.0.1:") {
					t.Errorf("dialled %s", d)
				}
			}
		})
	}
	// The same URL with an honest answer is fetched: the resolver is used.
	okURL := fmt.Sprintf("http://aia.example:%d/issuer.crt", aiaPort)
	leaf := pki.Leaf(testlab.LeafOpts{AIAURL: okURL, Chain: []*x509.Certificate{}})
	cr, err := AnalyzePEM(ctx, testlab.ChainPEM(leaf), "", Options{Now: pki.Now, Roots: pki.Roots(), Resolver: fixedResolver{netip.MustParseAddr("127.0.0.1")}})
	if err != nil || !cr.VerifiedViaAIA {
		t.Errorf("honest name: %v, aia %+v", err, cr.AIAFetched)
	}

	// OCSP through a redirect to the metadata address.
	ocspURL := testlab.ServeAIARedirect(t, "http://169.254.169.254/ocsp", nil)
	sc := testlab.StartWith(t, pki, pki.Leaf(testlab.LeafOpts{OCSPURL: ocspURL}), nil)
	var cc countingControl
	r, err := Run(ctx, labTarget(sc), Options{Now: pki.Now, Roots: pki.Roots(), Control: cc.control})
	if err != nil {
		t.Fatal(err)
	}
	if f := findingsOf(r)[CodeOCSPUnavailable]; !strings.Contains(f.Message, "blocked by policy") {
		t.Errorf("findings %v: want ocsp_unavailable saying the policy refused the redirect", r.Findings)
	}
	for _, d := range cc.passed() {
		if !strings.HasPrefix(d, "127.0.0.1:") {
			t.Errorf("dialled %s", d)
		}
	}

	// checkRevocation without a client (a caller outside Run) obeys the
	// default policy too. The URL is an IPv6 link-local address without a
	// zone, refused by the default policy and undeliverable anyway (connect
	// fails with EINVAL): even a broken policy could not make this test
	// send a packet anywhere.
	direct := pki.Leaf(testlab.LeafOpts{OCSPURL: "http://[fe80::1]/ocsp"})
	res := checkRevocation(ctx, revocationInput{Leaf: direct.Leaf, Issuer: pki.Intermediate.Cert}, revocationOptions{Now: pki.Now, Timeout: time.Second})
	if !strings.Contains(res.Revocation.Error+fmt.Sprint(res.Findings), "blocked by policy") {
		t.Errorf("checkRevocation without client: %+v %v", res.Revocation, res.Findings)
	}
}

// TestClassifyBlocked: the classifier finds a wrapped *BlockedError with
// errors.As and claims nothing else.
func TestClassifyBlocked(t *testing.T) {
	be := &netpolicy.BlockedError{Addr: metadata, Reason: "link-local / cloud metadata"}
	err := fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: be})
	if f := classifyNetError(err, "connect", time.Second); f.Code != CodeTargetBlocked || f.Severity != SeverityCritical {
		t.Errorf("classified %+v", f)
	}
	if _, ok := classifyBlocked(errors.New("other")); ok {
		t.Errorf("claimed an unrelated error")
	}
	if _, ok := classifyBlocked(tls.RecordHeaderError{}); ok {
		t.Errorf("claimed a TLS error")
	}
}
