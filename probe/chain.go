package probe

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Chain problem kinds of a ChainReport.
const (
	ProblemMissingIntermediate = "missing_intermediate"
	ProblemOutOfOrder          = "out_of_order"
	ProblemDuplicate           = "duplicate"
	ProblemUnrelated           = "unrelated"
	ProblemRootServed          = "root_served"
	ProblemExpiredIntermediate = "expired_intermediate"
)

// ChainProblem is one defect of the served chain. Index is the position in
// the served chain (0 = leaf), -1 for a certificate that is missing.
type ChainProblem struct {
	Kind    string `json:"kind"`
	Index   int    `json:"index"`
	Subject string `json:"subject,omitempty"`
	Message string `json:"message"`
}

// PathCert is one certificate of a verified path and where it came from.
type PathCert struct {
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
	// Source is "served" (index in the served chain), "trust_store" or "aia".
	Source      string `json:"source"`
	ServedIndex *int   `json:"served_index,omitempty"`
}

// ChainReport is what inspect_chain and inspect_certificate return: the
// Report summary fields (status, findings, leaf, chain...) at top level,
// plus every served certificate in order with full details, the chain's
// problems, every verified path and what AIA supplied.
type ChainReport struct {
	Report
	Certificates  []CertInfo     `json:"certificates"`
	Problems      []ChainProblem `json:"problems"`
	VerifiedPaths [][]PathCert   `json:"verified_paths"`
	AIAFetched    []AIAFetch     `json:"aia_fetched"`
	// VerifiedViaAIA: the paths above exist only with AIA-fetched issuers.
	VerifiedViaAIA bool `json:"verified_via_aia"`
}

// InspectChain probes t like Run and details the whole served chain.
func InspectChain(ctx context.Context, t Target, opts Options) (ChainReport, error) {
	if err := t.check(); err != nil {
		return ChainReport{}, err
	}
	opts = opts.withDefaults()
	p := newProbeRun(t, opts)
	p.run(ctx)
	if errors.Is(ctx.Err(), context.Canceled) {
		return buildChainReport(*p.report, p.analysis, opts), ErrCanceled
	}
	return buildChainReport(*p.report, p.analysis, opts), nil
}

// Limits on pasted PEM.
const (
	maxPEMBytes = 1 << 20
	maxPEMCerts = 32
)

// AnalyzePEM analyses certificates pasted as PEM (one certificate, or a
// chain leaf first) as inspect_chain would analyse a served chain. host, if
// not empty, is checked against the leaf. Junk input is a *FieldError on
// field "pem". No handshake happens: Reachable is false and Status is the
// highest finding severity (ok when none), not "down".
func AnalyzePEM(ctx context.Context, pemText, host string, opts Options) (ChainReport, error) {
	certs, err := parsePEMChain(pemText)
	if err != nil {
		return ChainReport{}, err
	}
	if host != "" {
		if host, err = normalizeHost(strings.TrimSpace(host)); err != nil {
			return ChainReport{}, &FieldError{"host", err.Error()}
		}
	}
	opts = opts.withDefaults()
	a := analyzeChain(ctx, certs, host, opts, true)
	r := Report{
		Target:      TargetInfo{Host: host},
		CheckedAt:   opts.Now.UTC(),
		Trusted:     a.chainOK && a.hostOK && a.timeOK,
		ExpiryStage: a.stage,
		Findings:    append([]Finding{}, a.findings...),
		Leaf:        a.leafInfo,
		Chain:       a.chainInfo(),
	}
	finalize(&r)
	// The probe rule would say "down" for lack of a handshake; for pasted
	// certificates the findings are the verdict.
	r.Status = severityStatus(r.Findings)
	return buildChainReport(r, a, opts), nil
}

// parsePEMChain decodes PEM certificates, rejecting anything else with a
// *FieldError on field "pem".
func parsePEMChain(pemText string) ([]*x509.Certificate, error) {
	if strings.TrimSpace(pemText) == "" {
		return nil, &FieldError{"pem", "is required"}
	}
	if len(pemText) > maxPEMBytes {
		return nil, &FieldError{"pem", fmt.Sprintf("too large (%d bytes, at most %d)", len(pemText), maxPEMBytes)}
	}
	var certs []*x509.Certificate
	rest := []byte(pemText)
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE":
		default:
			if strings.Contains(blk.Type, "PRIVATE KEY") {
				return nil, &FieldError{"pem", fmt.Sprintf("block %d is a private key: never paste private keys; send only certificates", n)}
			}
			return nil, &FieldError{"pem", fmt.Sprintf("block %d is %q, not a CERTIFICATE", n, blk.Type)}
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, &FieldError{"pem", fmt.Sprintf("certificate %d does not parse: %v", n, err)}
		}
		certs = append(certs, c)
		if len(certs) > maxPEMCerts {
			return nil, &FieldError{"pem", fmt.Sprintf("more than %d certificates", maxPEMCerts)}
		}
	}
	if len(certs) == 0 {
		return nil, &FieldError{"pem", "no -----BEGIN CERTIFICATE----- block found"}
	}
	if strings.TrimSpace(string(rest)) != "" && strings.Contains(string(rest), "-----BEGIN") {
		return nil, &FieldError{"pem", fmt.Sprintf("a malformed PEM block follows certificate %d", len(certs))}
	}
	return certs, nil
}

func buildChainReport(r Report, a *chainAnalysis, opts Options) ChainReport {
	cr := ChainReport{
		Report:        r,
		Certificates:  []CertInfo{},
		Problems:      []ChainProblem{},
		VerifiedPaths: [][]PathCert{},
		AIAFetched:    []AIAFetch{},
	}
	if a == nil {
		return cr
	}
	for _, c := range a.served {
		cr.Certificates = append(cr.Certificates, *certInfo(c, opts.Now, opts.IncludePEM))
	}
	cr.Problems = append(cr.Problems, a.problems...)
	cr.AIAFetched = append(cr.AIAFetched, a.aia...)
	cr.VerifiedViaAIA = a.viaAIA
	for _, chain := range a.chains {
		var path []PathCert
		for _, c := range chain {
			pc := PathCert{Subject: c.Subject.String(), SHA256: certInfo(c, opts.Now, false).SHA256, Source: "trust_store"}
			for i, s := range a.served {
				if s.Equal(c) {
					idx := i
					pc.Source, pc.ServedIndex = "served", &idx
					break
				}
			}
			if pc.ServedIndex == nil {
				for _, f := range a.aiaCerts {
					if f.Equal(c) {
						pc.Source = "aia"
					}
				}
			}
			path = append(path, pc)
		}
		cr.VerifiedPaths = append(cr.VerifiedPaths, path)
	}
	return cr
}
