package probe

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/tlswatch/tlswatch/ari"
)

// ACME Renewal Information: when the leaf comes from a CA that publishes
// it, ask the CA when it wants the certificate renewed. A window that has
// started means renew now, whatever the expiry date says: the CA moves it
// into the past before revoking certificates (a mass revocation, an
// incident).

// acmeFetcher is the ARI client of this probe: its HTTP client (outbound
// policy, trust store) and its Cache.
func (p *probeRun) acmeFetcher() ari.Fetcher {
	return ari.Fetcher{Client: p.opts.HTTPClient, Cache: p.opts.Cache.ari, Now: p.opts.Now}
}

// renewalWindow asks ca for the window of leaf.
func (p *probeRun) renewalWindow(ctx context.Context, ca CA, leaf *x509.Certificate) (ari.Directory, ari.Window, error) {
	f := p.acmeFetcher()
	dir, err := f.Directory(ctx, ca.ACMEDirectory)
	if err != nil {
		return dir, ari.Window{}, err
	}
	w, err := f.RenewalWindow(ctx, dir, leaf)
	return dir, w, err
}

// analyseRenewalInfo fills Report.RenewalInfo and says renewal_suggested
// once the window has started. Expired certificates are not asked about
// (the RFC: clients stop checking then).
func analyseRenewalInfo(ctx context.Context, p *probeRun) []Finding {
	if p.opts.NoARI || len(p.served) == 0 {
		return nil
	}
	leaf, now := p.served[0], p.opts.Now
	ca, ok := matchCA(p.opts.CAs, leaf)
	if !ok || ca.ACMEDirectory == "" || now.After(leaf.NotAfter) {
		return nil
	}
	ri := &RenewalInfo{CA: ca.Name, Directory: ca.ACMEDirectory}
	p.report.RenewalInfo = ri
	_, w, err := p.renewalWindow(ctx, ca, leaf)
	if err != nil {
		ri.Error = err.Error()
		return nil
	}
	start, end := w.Start, w.End
	ri.URL, ri.WindowStart, ri.WindowEnd, ri.ExplanationURL = w.URL, &start, &end, w.ExplanationURL
	if now.Before(start) {
		return nil
	}
	msg := fmt.Sprintf("%s suggests renewing this certificate now: its renewal window runs from %s to %s",
		ca.Name, start.Format(time.RFC3339), end.Format(time.RFC3339))
	if now.After(end) {
		msg += " and has already closed"
	}
	msg += fmt.Sprintf(", %s before the certificate's expiry", inDays(leaf.NotAfter.Sub(start)))
	if w.ExplanationURL != "" {
		msg += "; the CA explains why at " + w.ExplanationURL
	} else {
		msg += "; CAs do this before revoking certificates early"
	}
	return []Finding{NewFinding(CodeRenewalSuggested, msg)}
}
