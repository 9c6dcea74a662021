package testlab

// OCSP responders and CRL servers for the revocation tests. Each
// misbehaviour tlswatch must survive has a mode: revoked, unknown, hanging,
// garbage, a signature by the wrong key, an error status.

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSPMode selects what a lab OCSP responder answers.
type OCSPMode int

const (
	OCSPGood         OCSPMode = iota
	OCSPRevoked               // revoked one hour before PKI.Now, keyCompromise
	OCSPUnknown               // status unknown
	OCSPHang                  // never answers (until the client gives up)
	OCSPGarbage               // 200 with bytes that are not OCSP
	OCSPBadSignature          // a well-formed response signed by an unrelated key
	OCSPTryLater              // the tryLater error status
)

// OCSPResponse builds a DER OCSP response for leaf, signed by issuer, with
// thisUpdate = now-1h and nextUpdate = now+24h. status is ocsp.Good,
// ocsp.Revoked or ocsp.Unknown. extra goes into singleExtensions (e.g. SCTs).
// Use it as tls.Certificate.OCSPStaple for a stapled response.
func (p *PKI) OCSPResponse(leaf *x509.Certificate, issuer *Authority, status int, extra ...pkix.Extension) []byte {
	p.t.Helper()
	tmpl := ocsp.Response{
		Status:          status,
		SerialNumber:    leaf.SerialNumber,
		ThisUpdate:      p.Now.Add(-time.Hour),
		NextUpdate:      p.Now.Add(24 * time.Hour),
		ExtraExtensions: extra,
	}
	if status == ocsp.Revoked {
		tmpl.RevokedAt = p.Now.Add(-time.Hour)
		tmpl.RevocationReason = ocsp.KeyCompromise
	}
	der, err := ocsp.CreateResponse(issuer.Cert, issuer.Cert, tmpl, issuer.Key)
	if err != nil {
		p.t.Fatalf("testlab: create OCSP response: %v", err)
	}
	return der
}

// ServeOCSP starts an OCSP responder over plain HTTP on 127.0.0.1 answering
// for certificates issued by issuer, and returns its URL (for
// LeafOpts.OCSPURL). It answers POST and GET. hits, if non-nil, counts
// requests.
func (p *PKI) ServeOCSP(issuer *Authority, mode OCSPMode, hits *atomic.Int64) string {
	p.t.Helper()
	t := p.t
	done := make(chan struct{})
	impostor := p.NewRoot("tlswatch OCSP impostor")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil {
			hits.Add(1)
		}
		if mode == OCSPHang {
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		if mode == OCSPGarbage {
			w.Header().Set("Content-Type", "application/ocsp-response")
			io.WriteString(w, "<html>this is not OCSP</html>")
			return
		}
		if mode == OCSPTryLater {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write(ocsp.TryLaterErrorResponse)
			return
		}
		var raw []byte
		if r.Method == http.MethodPost {
			raw, _ = io.ReadAll(io.LimitReader(r.Body, 10<<10))
		} else {
			http.Error(w, "GET not supported by the lab responder", http.StatusMethodNotAllowed)
			return
		}
		req, err := ocsp.ParseRequest(raw)
		if err != nil {
			w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		status := map[OCSPMode]int{OCSPGood: ocsp.Good, OCSPRevoked: ocsp.Revoked, OCSPUnknown: ocsp.Unknown, OCSPBadSignature: ocsp.Good}[mode]
		tmpl := ocsp.Response{
			Status:       status,
			SerialNumber: req.SerialNumber,
			ThisUpdate:   p.Now.Add(-time.Hour),
			NextUpdate:   p.Now.Add(24 * time.Hour),
		}
		if status == ocsp.Revoked {
			tmpl.RevokedAt = p.Now.Add(-time.Hour)
			tmpl.RevocationReason = ocsp.KeyCompromise
		}
		signer := issuer
		if mode == OCSPBadSignature {
			signer = impostor
		}
		der, err := ocsp.CreateResponse(issuer.Cert, signer.Cert, tmpl, signer.Key)
		if err != nil {
			t.Errorf("testlab: OCSP response: %v", err)
			w.Write(ocsp.InternalErrorErrorResponse)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(der)
	}))
	srv.Config.ErrorLog = quietLog
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs first: releases hanging handlers
	return srv.URL + "/ocsp"
}

// ServeCRL publishes a DER CRL signed by issuer listing revoked serials,
// thisUpdate now-1h, nextUpdate now+24h, and returns its URL. hits, if
// non-nil, counts requests.
func (p *PKI) ServeCRL(issuer *Authority, revoked []*big.Int, hits *atomic.Int64) string {
	p.t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber: s, RevocationTime: p.Now.Add(-2 * time.Hour), ReasonCode: 1,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(p.serial.Add(1)),
		ThisUpdate:                p.Now.Add(-time.Hour),
		NextUpdate:                p.Now.Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, issuer.Cert, issuer.Key)
	if err != nil {
		p.t.Fatalf("testlab: create CRL: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil {
			hits.Add(1)
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(der)
	}))
	srv.Config.ErrorLog = quietLog
	p.t.Cleanup(srv.Close)
	return srv.URL + "/lab.crl"
}

// SCTListExtension builds a certificate or OCSP extension (id is
// 1.3.6.1.4.1.11129.2.4.2 for certificates, .5 for OCSP) carrying n
// syntactically valid, fake SCTs. Nothing verifies SCT signatures in
// tlswatch; counting them is the check.
func SCTListExtension(id asn1.ObjectIdentifier, n int) pkix.Extension {
	var list []byte
	for i := 0; i < n; i++ {
		sct := []byte{0}                             // version v1
		sct = append(sct, make([]byte, 32)...)       // log id
		sct[1] = byte(i + 1)                         // distinct logs
		sct = append(sct, 0, 0, 1, 0x8c, 0, 0, 0, 0) // timestamp (ms)
		sct = append(sct, 0, 0)                      // no extensions
		sct = append(sct, 4, 3)                      // sha256, ecdsa
		sct = append(sct, 0, 2, 0xde, 0xad)          // signature
		list = append(list, byte(len(sct)>>8), byte(len(sct)))
		list = append(list, sct...)
	}
	tls := append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
	val, _ := asn1.Marshal(tls)
	return pkix.Extension{Id: id, Value: val}
}
