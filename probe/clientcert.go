package probe

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Client certificates (mTLS). The operator names each certificate at start
// (`--client-cert NAME=CERT,KEY`); a check or a watch refers to it by NAME.
// A tool call never supplies a path: that would let an agent make the server
// read any file it can.

// clientCertNameRE keeps names simple enough to appear in tool schemas and
// watch records without quoting.
var clientCertNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// LoadClientCerts parses `NAME=CERT,KEY` specs (CERT and KEY are PEM file
// paths; CERT may hold the chain after the leaf) and loads each pair. Errors
// name the spec and the reason. Duplicate names are an error.
func LoadClientCerts(specs []string) (map[string]tls.Certificate, error) {
	out := make(map[string]tls.Certificate, len(specs))
	for _, spec := range specs {
		name, files, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, &FieldError{Field: "client-cert", Reason: fmt.Sprintf("%q: want NAME=CERT,KEY", spec)}
		}
		if !clientCertNameRE.MatchString(name) {
			return nil, &FieldError{Field: "client-cert", Reason: fmt.Sprintf("%q: name must be 1-64 letters, digits, '.', '_' or '-'", name)}
		}
		certFile, keyFile, ok := strings.Cut(files, ",")
		if !ok || certFile == "" || keyFile == "" {
			return nil, &FieldError{Field: "client-cert", Reason: fmt.Sprintf("%q: want NAME=CERT,KEY (two PEM files)", spec)}
		}
		if _, dup := out[name]; dup {
			return nil, &FieldError{Field: "client-cert", Reason: fmt.Sprintf("name %q given twice", name)}
		}
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, &FieldError{Field: "client-cert", Reason: fmt.Sprintf("%s: %v", name, err)}
		}
		if pair.Leaf == nil {
			if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				return nil, &FieldError{Field: "client-cert", Reason: fmt.Sprintf("%s: %v", name, err)}
			}
		}
		out[name] = pair
	}
	return out, nil
}

// clientCertExpiry describes the client certificate we would present and
// grades its own expiry like expiring_soon: info within 30 days, warning
// within 14, critical within 7 and once expired. A finding starts when an
// expiry stage is reached, by the rule of the leaf (ExpiryStage).
func clientCertExpiry(cert *tls.Certificate, now time.Time, thresholds []Threshold) (*CertInfo, []Finding) {
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, nil
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil
		}
	}
	info := certInfo(leaf, now, false)
	if len(thresholds) == 0 {
		thresholds = DefaultThresholds
	}
	stage := ExpiryStage(Validity{leaf.NotBefore, leaf.NotAfter}, now, thresholds)
	days := info.DaysRemaining
	var sev Severity
	var msg string
	switch {
	case !now.Before(leaf.NotAfter):
		sev = SeverityCritical
		msg = fmt.Sprintf("the client certificate %q expired on %s: servers requiring mTLS will refuse every connection",
			leaf.Subject.CommonName, leaf.NotAfter.UTC().Format("2006-01-02"))
	case now.Before(leaf.NotBefore):
		sev = SeverityCritical
		msg = fmt.Sprintf("the client certificate %q is not valid before %s", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))
	case stage != StageNone:
		sev = expirySeverity(days) // the expiring_soon grading
		msg = fmt.Sprintf("the client certificate %q expires in %d days (%s): renew it before mTLS connections fail",
			leaf.Subject.CommonName, days, leaf.NotAfter.UTC().Format("2006-01-02"))
	default:
		return info, nil
	}
	return info, []Finding{{Code: CodeClientCertExpiring, Severity: sev, Message: msg}}
}
