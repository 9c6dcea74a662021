package probe

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// chainAnalysis is the certificate verdict shared by Run, InspectChain and
// AnalyzePEM.
type chainAnalysis struct {
	served []*x509.Certificate
	leaf   *x509.Certificate
	host   string
	now    time.Time

	leafInfo *CertInfo
	stage    Stage
	findings []Finding

	// chains are the verified chains; with AIA they were completed by
	// fetched issuers (then chainOK is false: agents do not fetch).
	chains   [][]*x509.Certificate
	chainOK  bool // a path verifies from the served chain and the trust store alone
	viaAIA   bool // a path verifies only with AIA-fetched issuers
	hostOK   bool
	timeOK   bool
	path     []int // indices into served of the path a client follows from the leaf
	problems []ChainProblem
	aia      []AIAFetch
	aiaCerts []*x509.Certificate
	roots    *x509.CertPool
	// customRoots: the operator gave --ca-file roots (Options.CustomRoots).
	customRoots bool
	pasted      bool // the chain was pasted as PEM, not served

	validity []CertValidity // of each certificate on clientPath
	earliest time.Time      // the earliest not_after on clientPath
}

// chainName names the chain under analysis in messages.
func (a *chainAnalysis) chainName() string {
	if a.pasted {
		return "the pasted chain"
	}
	return "the served chain"
}

func (a *chainAnalysis) add(code, format string, args ...any) {
	for _, f := range a.findings {
		if f.Code == code {
			return
		}
	}
	a.findings = append(a.findings, NewFinding(code, fmt.Sprintf(format, args...)))
}

func (a *chainAnalysis) problem(kind string, idx int, c *x509.Certificate, msg string) {
	p := ChainProblem{Kind: kind, Index: idx, Message: msg}
	if c != nil {
		p.Subject = c.Subject.String()
	}
	a.problems = append(a.problems, p)
}

func (a *chainAnalysis) chainInfo() *ChainInfo {
	ci := &ChainInfo{Served: len(a.served), Complete: a.chainOK || a.nothingMissing(), VerifiedPath: []string{}, Validity: a.validity}
	if !a.earliest.IsZero() {
		e := a.earliest
		ci.EarliestNotAfter = &e
	}
	if len(a.chains) > 0 {
		for _, c := range a.chains[0] {
			ci.VerifiedPath = append(ci.VerifiedPath, c.Subject.String())
		}
	}
	return ci
}

// nothingMissing: the served path ends at a self-signed root or at a
// certificate whose issuer is in the trust store, so a chain that still
// fails to verify (a SHA-1 signature, an expired intermediate) fails for
// another reason than a missing certificate.
func (a *chainAnalysis) nothingMissing() bool {
	top := a.served[a.path[len(a.path)-1]]
	return isSelfSigned(top) || poolHasSubject(a.roots, top.RawIssuer)
}

// poolHasSubject reports whether a certificate of pool has the raw subject
// name. Subjects omits the platform roots of a system pool on macOS and
// Windows only; there the answer is false.
func poolHasSubject(pool *x509.CertPool, raw []byte) bool {
	if pool == nil {
		return false
	}
	for _, s := range pool.Subjects() {
		if bytes.Equal(s, raw) {
			return true
		}
	}
	return false
}

func (a *chainAnalysis) leafIssuer() *x509.Certificate {
	if len(a.chains) > 0 && len(a.chains[0]) > 1 {
		return a.chains[0][1]
	}
	if len(a.path) > 1 {
		return a.served[a.path[1]]
	}
	return nil
}

// analyzeChain examines a served chain (leaf first) for host at opts.Now.
// pasted marks PEM given by a user rather than a served chain.
func analyzeChain(ctx context.Context, served []*x509.Certificate, host string, opts Options, pasted bool) *chainAnalysis {
	leaf := served[0]
	now := opts.Now
	a := &chainAnalysis{served: served, leaf: leaf, host: host, now: now, roots: opts.Roots, pasted: pasted,
		customRoots: opts.CustomRoots != nil}
	// Pasted certificates may be client or CA certificates: any extended
	// key usage is accepted when no host is checked.
	anyUsage := pasted && host == ""
	a.leafInfo = certInfo(leaf, now, false)
	a.leafValidity(opts)
	a.checkName(host)
	a.walkServed()
	a.verify(ctx, opts, anyUsage)
	a.checkWeak()
	a.chainExpiry(opts.Thresholds)
	return a
}

// leafValidity judges the leaf's validity period: expired, not yet valid,
// within an expiry stage, renewal overdue.
func (a *chainAnalysis) leafValidity(opts Options) {
	leaf, now := a.leaf, a.now
	v := Validity{leaf.NotBefore, leaf.NotAfter}
	a.stage = ExpiryStage(v, now, opts.Thresholds)
	a.timeOK = true
	switch days := a.leafInfo.DaysRemaining; {
	case now.Before(leaf.NotBefore):
		a.timeOK = false
		a.add(CodeNotYetValid, "the certificate is valid only from %s (%s from now): clients reject it until then; check the server clock too",
			leaf.NotBefore.UTC().Format(time.RFC3339), inDays(leaf.NotBefore.Sub(now)))
	case now.After(leaf.NotAfter):
		a.timeOK = false
		a.add(CodeExpired, "the certificate expired on %s (%d days ago): every agent fails with a certificate error",
			leaf.NotAfter.UTC().Format(time.RFC3339), -days)
	case a.stage != StageNone:
		a.findings = append(a.findings, Finding{Code: CodeExpiringSoon, Severity: expirySeverity(days),
			Message: fmt.Sprintf("the certificate expires on %s, in %s (stage %s; %s)",
				leaf.NotAfter.UTC().Format(time.RFC3339), TimeLeft(leaf.NotAfter, now), a.stage, LifetimeProgress(v, now))})
	}
	if f, ok := renewalOverdue(v, now, opts.RenewalCycle); ok {
		a.findings = append(a.findings, f)
	}
}

// checkName matches host against the SANs (IP SANs for an IP target).
func (a *chainAnalysis) checkName(host string) {
	leaf := a.leaf
	noSAN := !hasSANExtension(leaf)
	if noSAN {
		a.add(CodeCNOnly, "the certificate has no Subject Alternative Name extension, only CN=%q: clients ignore the CN (Go, Python, Node.js, browsers), so no name can match", leaf.Subject.CommonName)
	}
	if host == "" {
		a.hostOK = true
		return
	}
	err := leaf.VerifyHostname(host)
	a.hostOK = err == nil
	if err == nil {
		return
	}
	var he x509.HostnameError
	if noSAN {
		if !strings.EqualFold(leaf.Subject.CommonName, host) {
			a.add(CodeHostnameMismatch, "the certificate (CN=%q, no SANs) does not name %s", leaf.Subject.CommonName, host)
		}
		return
	}
	if !errors.As(err, &he) {
		a.add(CodeHostnameMismatch, "the certificate does not match %s: %v", host, err)
		return
	}
	names := sanStrings(leaf)
	msg := fmt.Sprintf("the certificate is valid for %s, not for %s", strings.Join(names, ", "), host)
	for _, n := range leaf.DNSNames {
		if strings.HasPrefix(n, "*.") && strings.HasSuffix(strings.ToLower(host), strings.ToLower(n[1:])) {
			msg += fmt.Sprintf(" (the wildcard %s covers exactly one label; %s has more)", n, host)
			break
		}
	}
	a.add(CodeHostnameMismatch, "%s", msg)
}

// walkServed follows the served chain from the leaf by issuer name and key
// identifier, and records what is out of order, duplicated, unrelated, a
// served root, or an expired intermediate.
func (a *chainAnalysis) walkServed() {
	served := a.served
	dup := make([]int, len(served)) // index of the first identical cert, or -1
	for i := range served {
		dup[i] = -1
		for j := 0; j < i; j++ {
			if bytes.Equal(served[i].Raw, served[j].Raw) {
				dup[i] = j
				break
			}
		}
	}
	used := make([]bool, len(served))
	a.path = []int{0}
	used[0] = true
	for cur := served[0]; !isSelfSigned(cur); {
		next := -1
		for i := 1; i < len(served); i++ {
			if !used[i] && dup[i] < 0 && issuedBy(cur, served[i]) {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		a.path = append(a.path, next)
		used[next] = true
		cur = served[next]
	}

	var order []string
	for i := 1; i < len(served); i++ {
		c := served[i]
		switch {
		case dup[i] >= 0:
			order = append(order, fmt.Sprintf("#%d duplicates #%d (%s)", i+1, dup[i]+1, c.Subject.CommonName))
			a.problem(ProblemDuplicate, i, c, fmt.Sprintf("certificate #%d is a copy of #%d", i+1, dup[i]+1))
		case !used[i]:
			order = append(order, fmt.Sprintf("#%d (%s) is unrelated to the leaf's chain", i+1, c.Subject.String()))
			a.problem(ProblemUnrelated, i, c, fmt.Sprintf("certificate #%d issued neither the leaf nor any certificate on its path", i+1))
		}
	}
	for k := 1; k < len(a.path); k++ {
		if a.path[k] < a.path[k-1] {
			order = append(order, fmt.Sprintf("#%d (%s) comes before #%d, the certificate it signed; an issuer must follow what it signed", a.path[k]+1, served[a.path[k]].Subject.CommonName, a.path[k-1]+1))
			a.problem(ProblemOutOfOrder, a.path[k], served[a.path[k]], fmt.Sprintf("certificate #%d issues #%d and must come right after it", a.path[k]+1, a.path[k-1]+1))
		}
	}
	if len(order) > 0 {
		a.add(CodeChainOrder, "served chain problems: %s", strings.Join(order, "; "))
	}

	var roots, expired []string
	for i := 1; i < len(served); i++ {
		c := served[i]
		if dup[i] >= 0 {
			continue
		}
		if isSelfSigned(c) {
			roots = append(roots, c.Subject.String())
			a.problem(ProblemRootServed, i, c, fmt.Sprintf("certificate #%d is a self-signed root; clients use their own copy", i+1))
			continue
		}
		if a.now.After(c.NotAfter) || a.now.Before(c.NotBefore) {
			what := "expired on " + c.NotAfter.UTC().Format(time.RFC3339)
			if a.now.Before(c.NotBefore) {
				what = "not valid before " + c.NotBefore.UTC().Format(time.RFC3339)
			}
			expired = append(expired, fmt.Sprintf("%s (%s)", c.Subject.String(), what))
			a.problem(ProblemExpiredIntermediate, i, c, fmt.Sprintf("certificate #%d %s", i+1, what))
		}
	}
	if len(roots) > 0 {
		a.add(CodeRootInChain, "%s also contains the root %s; harmless but wasted bytes, clients use their own copy", a.chainName(), strings.Join(roots, ", "))
	}
	if len(expired) > 0 {
		a.add(CodeExpiredIntermediate, "the served intermediate %s: clients cannot build a valid path through it", strings.Join(expired, "; "))
	}
}

// verify builds a path with crypto/x509 against the explicit trust store
// and classifies a failure by its typed error.
func (a *chainAnalysis) verify(ctx context.Context, opts Options, anyUsage bool) {
	leaf := a.leaf
	vt := clampToValidity(a.now, leaf)
	chains, err := opts.Cache.verify.verifyChains(leaf, a.served[1:], opts.Roots, vt, anyUsage)
	if err == nil {
		a.chains, a.chainOK = chains, true
		return
	}
	inter := x509.NewCertPool()
	for _, c := range a.served[1:] {
		inter.AddCert(c)
	}
	vo := x509.VerifyOptions{Roots: opts.Roots, Intermediates: inter, CurrentTime: vt}
	if anyUsage {
		vo.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}

	var (
		cie x509.CertificateInvalidError
		uae x509.UnknownAuthorityError
	)
	switch {
	case errors.As(err, &cie):
		if cie.Reason == x509.Expired && cie.Cert != nil && cie.Cert != leaf {
			if !a.now.After(cie.Cert.NotAfter) && !a.now.Before(cie.Cert.NotBefore) {
				// Invalid only at the moved clock of an expired leaf: the
				// leaf's own expiry is the diagnosis.
				return
			}
			a.add(CodeExpiredIntermediate, "the intermediate %s is outside its validity (%s to %s): clients cannot build a valid path",
				cie.Cert.Subject.String(), cie.Cert.NotBefore.UTC().Format(time.RFC3339), cie.Cert.NotAfter.UTC().Format(time.RFC3339))
			return
		}
		a.add(CodeInvalidChain, "the chain is rejected: %s", invalidReasonText(cie))
	case errors.As(err, &uae):
		a.unknownAuthority(ctx, opts, vo)
	default:
		a.add(CodeInvalidChain, "the chain is rejected: %v", err)
	}
}

// unknownAuthority tells an incomplete chain from an untrusted root (or a
// self-signed leaf, or a path broken only by a weak signature).
func (a *chainAnalysis) unknownAuthority(ctx context.Context, opts Options, vo x509.VerifyOptions) {
	leaf := a.leaf
	if isSelfSigned(leaf) {
		a.add(CodeSelfSigned, "the certificate (%s) is self-signed and not in the trust store: agents reject it", leaf.Subject.String())
		return
	}
	top := a.served[a.path[len(a.path)-1]]
	if a.brokenByWeakSignature() {
		return // weak_signature explains it (added by checkWeak)
	}
	if isSelfSigned(top) {
		a.add(CodeUntrustedRoot, "the served chain ends at the self-signed root %s, which is not in the trust store", top.Subject.String())
		return
	}
	// The chain stops below a root we know. Ask AIA for the missing issuer,
	// as a browser would (agents do not).
	var aiaNote string
	if !opts.NoAIA {
		var done bool
		if done, aiaNote = a.diagnoseViaAIA(ctx, opts, vo, top); done {
			return
		}
	}
	if len(a.aiaCerts) > 0 {
		// AIA found the omitted intermediate, but its issuer is unknown
		// too: both defects are real.
		got := a.aiaCerts[len(a.aiaCerts)-1]
		a.add(CodeIncompleteChain, "%s lacks the intermediate %s; AIA can supply it from %s, but agents do not fetch AIA: serve the full chain",
			a.chainName(), a.aiaCerts[0].Subject.String(), a.aia[0].URL)
		a.problem(ProblemMissingIntermediate, -1, a.aiaCerts[0], fmt.Sprintf("missing from the served chain; found via AIA at %s", a.aia[0].URL))
		a.add(CodeUntrustedRoot, "likely an untrusted root: even completed via AIA, the chain ends at %s, issued by %s, which is not in the trust store (%s)",
			got.Subject.String(), issuerName(got), aiaNote)
		return
	}
	if top == leaf && (len(leaf.IssuingCertificateURL) > 0 || len(leaf.OCSPServer) > 0) {
		a.leafWithAIA(aiaNote)
		return
	}
	a.unseenIssuer(top, aiaNote, weighIssuer(top, opts.Roots, opts.CustomRoots))
}

// diagnoseViaAIA completes the chain from top with AIA. done: the diagnosis
// is made (the chain verifies with what AIA supplied, or AIA led to an
// untrusted root); otherwise note says why AIA could not help.
func (a *chainAnalysis) diagnoseViaAIA(ctx context.Context, opts Options, vo x509.VerifyOptions, top *x509.Certificate) (bool, string) {
	chains, fetched, note := a.completeViaAIA(ctx, opts, vo, top)
	switch {
	case chains != nil:
		a.chains, a.viaAIA = chains, true
		var urls, subjects []string
		for _, f := range a.aia {
			if f.Error == "" {
				urls = append(urls, f.URL)
			}
		}
		for _, c := range fetched {
			subjects = append(subjects, c.Subject.String())
		}
		a.add(CodeIncompleteChain, "%s lacks the intermediate %s (issuer of %s); AIA can supply it from %s, but agents do not fetch AIA: serve the full chain",
			a.chainName(), strings.Join(subjects, " and "), top.Subject.String(), strings.Join(urls, ", "))
		a.problem(ProblemMissingIntermediate, -1, fetched[0], fmt.Sprintf("missing from the served chain; found via AIA at %s", strings.Join(urls, ", ")))
		return true, note
	case len(fetched) > 0 && isSelfSigned(fetched[len(fetched)-1]):
		root := fetched[len(fetched)-1]
		a.add(CodeUntrustedRoot, "the chain, completed via AIA, ends at the root %s, which is not in the trust store", root.Subject.String())
		return true, note
	}
	return false, note
}

// leafWithAIA diagnoses a leaf served alone, whose issuer is unknown and
// could not be fetched. Public CAs put Authority Information Access
// (caIssuers, OCSP) in every leaf, private CAs (openssl, mkcert, internal
// PKIs) usually none: such a leaf most likely lacks its intermediate.
func (a *chainAnalysis) leafWithAIA(aiaNote string) {
	issuer := issuerName(a.leaf)
	reason := "the leaf names no caIssuers URL to fetch it from"
	if aiaNote != "" {
		reason = aiaNote
	}
	a.add(CodeIncompleteChain, "likely an incomplete chain: %s has no certificate for the leaf's issuer %s, and %s; serve the intermediate",
		a.chainName(), issuer, reason)
	a.problem(ProblemMissingIntermediate, -1, nil, fmt.Sprintf("the issuer %s of the leaf is not served", issuer))
}

// unseenIssuer reports the issuer of top that nothing supplied, by what
// weighIssuer makes of it; both codes only when it cannot tell.
func (a *chainAnalysis) unseenIssuer(top *x509.Certificate, aiaNote string, ev issuerEvidence) {
	issuer := issuerName(top)
	what, after := fmt.Sprintf("no certificate of the leaf's issuer %s is served or in the trust store", issuer), "the leaf"
	if top != a.leaf {
		what = fmt.Sprintf("%s ends at %s, and no certificate of its issuer %s is served or in the trust store", a.chainName(), top.Subject.String(), issuer)
		after = top.Subject.String()
	}
	var evidence []string
	if ev.why != "" {
		evidence = append(evidence, ev.why)
	}
	if top == a.leaf {
		evidence = append(evidence, "the leaf has no AIA caIssuers URL to fetch it from")
		if ev.why == "" {
			evidence = append(evidence, "a leaf without AIA information usually comes from a private CA")
		}
	}
	if aiaNote != "" {
		evidence = append(evidence, aiaNote)
	}
	because := ""
	if len(evidence) > 0 {
		because = "; " + strings.Join(evidence, "; ")
	}
	switch ev.guess {
	case guessIntermediate:
		a.add(CodeIncompleteChain, "likely an incomplete chain: %s%s: serve that intermediate after %s", what, because, after)
		a.problem(ProblemMissingIntermediate, -1, nil, fmt.Sprintf("the issuer %s of %s is not served", issuer, top.Subject.String()))
	case guessRoot:
		a.add(CodeUntrustedRoot, "likely an untrusted root: %s%s%s", what, because, a.rootAdvice(top, issuer))
	default:
		a.add(CodeIncompleteChain, "an incomplete chain or an untrusted root, the probe cannot tell which: %s%s; if %s is an intermediate, serve it after %s",
			what, because, issuer, after)
		a.problem(ProblemMissingIntermediate, -1, nil, fmt.Sprintf("the issuer %s of %s is not served", issuer, top.Subject.String()))
		a.add(CodeUntrustedRoot, "an untrusted root or an incomplete chain, the probe cannot tell which: if %s is a root, it is not one of the roots configured", issuer)
	}
}

// rootAdvice ends an untrusted_root message. It suggests --ca-file only to
// an operator who gave no roots: one who did is told theirs did not match.
func (a *chainAnalysis) rootAdvice(top *x509.Certificate, issuer string) string {
	switch {
	case a.customRoots:
		return "; it is not one of your --ca-file roots"
	case top == a.leaf:
		return fmt.Sprintf("; if you trust that CA, add its root with --ca-file (if %s is an intermediate of a public CA, the server omits it: serve the full chain)", issuer)
	}
	return " (a private or unknown CA; if it is a cross-signing CA, serve it too)"
}

// brokenByWeakSignature reports whether the served path contains a
// signature that crypto/x509 refuses as insecure (SHA-1, MD5): then the
// unknown authority is a consequence, not the diagnosis.
func (a *chainAnalysis) brokenByWeakSignature() bool {
	for k := 0; k+1 < len(a.path); k++ {
		child, parent := a.served[a.path[k]], a.served[a.path[k+1]]
		var ia x509.InsecureAlgorithmError
		if err := child.CheckSignatureFrom(parent); errors.As(err, &ia) {
			return true
		}
	}
	top := a.served[a.path[len(a.path)-1]]
	return !isSelfSigned(top) && isWeakSignature(top.SignatureAlgorithm)
}

// checkWeak flags weak signatures and keys on the path a client uses: the
// verified chain, else the served path plus what AIA found. A root's
// self-signature is never checked by clients and is ignored.
func (a *chainAnalysis) checkWeak() {
	path := a.clientPath()
	var sigs, keys []string
	for i, c := range path {
		// The anchor of a verified chain came from the trust store: its
		// self-signature is never checked, so skip even looking.
		anchor := len(a.chains) > 0 && i == len(path)-1
		if !anchor && isWeakSignature(c.SignatureAlgorithm) && !isSelfSigned(c) {
			sigs = append(sigs, fmt.Sprintf("%s (%s)", c.Subject.String(), c.SignatureAlgorithm))
		}
		if desc, weak := keyDescription(c.PublicKey); weak {
			keys = append(keys, fmt.Sprintf("%s (%s)", c.Subject.String(), desc))
		}
	}
	if len(sigs) > 0 {
		a.add(CodeWeakSignature, "signed with a broken hash: %s; Go, browsers and most clients refuse SHA-1/MD5 signatures", strings.Join(sigs, ", "))
	}
	if len(keys) > 0 {
		a.add(CodeWeakKey, "weak key: %s; use RSA of at least 2048 bits or ECDSA P-256", strings.Join(keys, ", "))
	}
}

func invalidReasonText(e x509.CertificateInvalidError) string {
	who := ""
	if e.Cert != nil {
		who = e.Cert.Subject.String() + ": "
	}
	switch e.Reason {
	case x509.NotAuthorizedToSign:
		return who + "it signed another certificate but is not a CA"
	case x509.IncompatibleUsage:
		return who + "not valid for TLS server authentication (extended key usage)"
	case x509.CANotAuthorizedForThisName, x509.UnconstrainedName, x509.NameConstraintsWithoutSANs:
		return who + "a name constraint on the path forbids this name"
	case x509.TooManyIntermediates:
		return who + "the path is longer than a CA's path length constraint"
	}
	return e.Error()
}

// clampToValidity moves now inside the leaf's validity so that an expired
// or not-yet-valid leaf (reported on its own) does not hide what is wrong
// with the rest of the chain.
func clampToValidity(now time.Time, leaf *x509.Certificate) time.Time {
	switch {
	case now.After(leaf.NotAfter):
		return leaf.NotAfter
	case now.Before(leaf.NotBefore):
		return leaf.NotBefore
	}
	return now
}

// issuedBy matches child to a candidate issuer by name and, when both carry
// them, key identifiers. It checks no signature: cheap enough for every probe.
func issuedBy(child, parent *x509.Certificate) bool {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return false
	}
	if len(child.AuthorityKeyId) > 0 && len(parent.SubjectKeyId) > 0 {
		return bytes.Equal(child.AuthorityKeyId, parent.SubjectKeyId)
	}
	return true
}

// isSelfSigned: the certificate names itself as issuer and its signature
// verifies with its own key (directly: CheckSignatureFrom would refuse a
// non-CA parent). A weak self-signature still counts, by key identifiers.
func isSelfSigned(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawIssuer, c.RawSubject) {
		return false
	}
	err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature)
	var ia x509.InsecureAlgorithmError
	if errors.As(err, &ia) {
		return len(c.AuthorityKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId)
	}
	return err == nil
}

func isWeakSignature(alg x509.SignatureAlgorithm) bool {
	switch alg {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return true
	}
	return false
}

func hasSANExtension(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			return true
		}
	}
	return false
}

func issuerName(c *x509.Certificate) string {
	return c.Issuer.String()
}
