package tools

import (
	"context"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/probe"
)

// InspectFunc has the signature of probe.InspectChain.
type InspectFunc func(ctx context.Context, t probe.Target, opts probe.Options) (probe.ChainReport, error)

// AnalyzePEMFunc has the signature of probe.AnalyzePEM.
type AnalyzePEMFunc func(ctx context.Context, pemText, host string, opts probe.Options) (probe.ChainReport, error)

// normalizeChainReport turns nil slices into [] so the result validates.
func normalizeChainReport(cr *probe.ChainReport) {
	normalizeReport(&cr.Report)
	if cr.Certificates == nil {
		cr.Certificates = []probe.CertInfo{}
	}
	for i := range cr.Certificates {
		if cr.Certificates[i].SANs == nil {
			cr.Certificates[i].SANs = []string{}
		}
	}
	if cr.Problems == nil {
		cr.Problems = []probe.ChainProblem{}
	}
	if cr.VerifiedPaths == nil {
		cr.VerifiedPaths = [][]probe.PathCert{}
	}
	if cr.AIAFetched == nil {
		cr.AIAFetched = []probe.AIAFetch{}
	}
}

// chainSummary: the Report line, then the served chain and its problems.
func chainSummary(cr probe.ChainReport, fallback string) string {
	var b strings.Builder
	b.WriteString(reportSummary(cr.Report, fallback))
	fmt.Fprintf(&b, "\n%d certificate%s served", len(cr.Certificates), plural(len(cr.Certificates)))
	for i, c := range cr.Certificates {
		fmt.Fprintf(&b, "\n  %d. %s (issuer %s, %d days remaining)", i, c.Subject, c.Issuer, c.DaysRemaining)
	}
	for _, p := range cr.Problems {
		fmt.Fprintf(&b, "\nproblem %s: %s", p.Kind, p.Message)
	}
	switch {
	case len(cr.VerifiedPaths) == 0:
		b.WriteString("\nno verified path to a trusted root")
	case cr.VerifiedViaAIA:
		fmt.Fprintf(&b, "\n%d verified path%s, only with AIA-fetched issuers", len(cr.VerifiedPaths), plural(len(cr.VerifiedPaths)))
	default:
		fmt.Fprintf(&b, "\n%d verified path%s", len(cr.VerifiedPaths), plural(len(cr.VerifiedPaths)))
	}
	return b.String()
}

// --- inspect_chain ---

// InspectArgs are inspect_chain's arguments.
type InspectArgs struct {
	DiagnoseArgs
	IncludePEM bool `json:"include_pem,omitempty" jsonschema:"Also return each served certificate in PEM form."`
}

func inspectChainTool(d Deps) Tool {
	def := mcp.NewTool("inspect_chain",
		mcp.WithDescription("Every certificate the server sends, in order, with full details (subject, issuer, serial, validity, days remaining, SANs, key, signature algorithm, SHA-256, CA flag, AIA/OCSP/CRL URLs, SCT count); "+
			"the verified path(s) a client builds and where each certificate came from; what is missing (and whether AIA supplies it), extra (root served), duplicated, unrelated or out of order. "+
			"Also carries the check_tls verdict fields."),
		withInputSchema[InspectArgs](append(diagnoseConstraints(), defaultValue("include_pem", false))...),
		withOutputSchema[probe.ChainReport]("inspect_chain"),
		annotate("Inspect chain", true, false, true, true),
	)
	return Tool{Def: def, Handler: typed(func(ctx context.Context, _ mcp.CallToolRequest, a InspectArgs) (probe.ChainReport, string, error) {
		t, err := a.probeTarget()
		if err != nil {
			return probe.ChainReport{}, "", err
		}
		opts, err := d.options(a.DiagnoseArgs)
		if err != nil {
			return probe.ChainReport{}, "", err
		}
		opts.IncludePEM = a.IncludePEM
		release, err := d.acquire(ctx)
		if err != nil {
			return probe.ChainReport{}, "", err
		}
		defer release()
		cr, err := d.InspectChain(ctx, t, opts)
		if err != nil {
			return probe.ChainReport{}, "", err
		}
		normalizeChainReport(&cr)
		return cr, chainSummary(cr, a.Target), nil
	})}
}

// --- inspect_certificate ---

// CertificateArgs are inspect_certificate's arguments.
type CertificateArgs struct {
	PEM  string `json:"pem" jsonschema:"One PEM certificate, or a chain leaf first (-----BEGIN CERTIFICATE----- blocks)."`
	Host string `json:"host,omitempty" jsonschema:"Check that the leaf is valid for this host name (optional)."`
}

func inspectCertificateTool(d Deps) Tool {
	def := mcp.NewTool("inspect_certificate",
		mcp.WithDescription("Analyse certificates pasted as PEM (one certificate, or a whole chain leaf first) the way inspect_chain analyses a served chain: "+
			"details of each certificate, expiry, chain problems, verified path(s) against the trust store, and, when host is given, whether the name matches. No network connection to the server is made."),
		withInputSchema[CertificateArgs](),
		withOutputSchema[probe.ChainReport]("inspect_certificate"),
		// Open world: completing a path may fetch issuers over AIA.
		annotate("Inspect certificate", true, false, true, true),
	)
	return Tool{Def: def, Handler: typed(func(ctx context.Context, _ mcp.CallToolRequest, a CertificateArgs) (probe.ChainReport, string, error) {
		if strings.TrimSpace(a.PEM) == "" {
			return probe.ChainReport{}, "", fieldErr("pem", "required: paste one or more -----BEGIN CERTIFICATE----- blocks")
		}
		cr, err := d.AnalyzePEM(ctx, a.PEM, a.Host, d.ProbeOptions)
		if err != nil {
			return probe.ChainReport{}, "", err
		}
		normalizeChainReport(&cr)
		label := a.Host
		if label == "" && len(cr.Certificates) > 0 {
			label = cr.Certificates[0].Subject
		}
		return cr, chainSummary(cr, label), nil
	})}
}
