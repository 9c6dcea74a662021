// Package pebblelab runs Let's Encrypt's test ACME server, Pebble, inside
// the test process on loopback, and obtains and revokes certificates from
// it with golang.org/x/crypto/acme. Pebble implements ACME Renewal
// Information as Let's Encrypt does: a fresh certificate's window sits
// around two thirds of its lifetime, and a revoked certificate's window
// moves into the past.
//
// Tests only. Authorizations succeed without challenges
// (PEBBLE_VA_ALWAYS_VALID), so no name needs to resolve.
//
// Pebble's validation authority starts a goroutine that lives as long as
// the process; packages using this lab ignore it in goleak:
// goleak.IgnoreTopFunction(pebblelab.VAWorker).
package pebblelab

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"golang.org/x/crypto/acme"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// CAAIdentity is the CAA issuer name Pebble's directory announces.
const CAAIdentity = "pebble.letsencrypt.org"

// VAWorker is the function of Pebble's validation-authority worker, for
// goleak.IgnoreTopFunction.
const VAWorker = "github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"

// Lab is a running Pebble.
type Lab struct {
	// DirectoryURL is the ACME directory (https on 127.0.0.1).
	DirectoryURL string
	// Roots trusts Pebble's issuing root and the lab's own HTTPS
	// certificate: a probe given them verifies the certificates Pebble
	// issues and can fetch from Pebble. RootsPEM holds the same two, for
	// --ca-file.
	Roots    *x509.CertPool
	RootsPEM string

	t      testing.TB
	srv    *httptest.Server
	client *acme.Client
}

// Start runs Pebble until the test ends. Certificates it issues live for
// validity.
func Start(t testing.TB, validity time.Duration) *Lab {
	t.Helper()
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "1")
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logger := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "lab", ValidityPeriod: uint64(validity / time.Second)}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, 0, 0, false, "", store)
	front := wfe.New(logger, store, validator, authority, []string{CAAIdentity}, false, false, 0, 0)

	srv := httptest.NewUnstartedServer(front.Handler())
	srv.StartTLS()
	t.Cleanup(srv.Close)

	roots := x509.NewCertPool()
	root := authority.GetRootCert(0).Cert
	roots.AddCert(root)
	roots.AddCert(srv.Certificate())
	l := &Lab{DirectoryURL: srv.URL + wfe.DirectoryPath, Roots: roots, t: t, srv: srv,
		RootsPEM: testlab.EncodePEM(root) + testlab.EncodePEM(srv.Certificate())}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l.client = &acme.Client{Key: key, DirectoryURL: l.DirectoryURL, HTTPClient: srv.Client()}
	ctx, cancel := l.ctx()
	defer cancel()
	if _, err := l.client.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatalf("pebblelab: register: %v", err)
	}
	return l
}

func (l *Lab) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// Issue orders a certificate for names and returns it ready to serve: the
// leaf, then Pebble's intermediate, with its key.
func (l *Lab) Issue(names ...string) tls.Certificate {
	t := l.t
	t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	order, err := l.client.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		t.Fatalf("pebblelab: order: %v", err)
	}
	for _, u := range order.AuthzURLs {
		l.authorize(ctx, u)
	}
	if order, err = l.client.WaitOrder(ctx, order.URI); err != nil {
		t.Fatalf("pebblelab: order not ready: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	ders, _, err := l.client.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		t.Fatalf("pebblelab: finalize: %v", err)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: ders, PrivateKey: crypto.Signer(key), Leaf: leaf}
}

// authorize accepts the first challenge of an authorization (the lab's
// validation authority passes it without looking) and waits for it.
func (l *Lab) authorize(ctx context.Context, u string) {
	t := l.t
	t.Helper()
	z, err := l.client.GetAuthorization(ctx, u)
	if err != nil {
		t.Fatalf("pebblelab: authorization: %v", err)
	}
	if z.Status == acme.StatusValid {
		return
	}
	if len(z.Challenges) == 0 {
		t.Fatalf("pebblelab: authorization %s offers no challenge", u)
	}
	if _, err := l.client.Accept(ctx, z.Challenges[0]); err != nil {
		t.Fatalf("pebblelab: accept: %v", err)
	}
	if _, err := l.client.WaitAuthorization(ctx, u); err != nil {
		t.Fatalf("pebblelab: authorization not valid: %v", err)
	}
}

// Revoke revokes cert with the account that ordered it. Pebble then
// suggests renewing it at once (a window an hour in the past).
func (l *Lab) Revoke(cert tls.Certificate) {
	t := l.t
	t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	if err := l.client.RevokeCert(ctx, nil, cert.Certificate[0], acme.CRLReasonSuperseded); err != nil {
		t.Fatalf("pebblelab: revoke: %v", err)
	}
}
