package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/tlswatch/tlswatch/probe"
)

// maxCAFileSize bounds one --ca-file: a bundle of every public root is about
// 250 KiB; anything far larger is the wrong file.
const maxCAFileSize = 16 << 20

// loadRoots returns the trust store: the system roots plus the PEM
// certificates of every file (--ca-file, TLSWATCH_CA_FILE). It never returns
// a nil pool on success: with Roots == nil Go would use the platform
// verifier on macOS and Windows, which fetches missing intermediates and
// hides an incomplete chain. Errors name the flag and the file.
func loadRoots(files []string) (*x509.CertPool, error) {
	sys, _ := probe.SystemRoots() // an empty pool when the system has none
	pool := sys.Clone()
	for _, f := range files {
		if err := addPEMFile(pool, f); err != nil {
			return nil, err
		}
	}
	return pool, nil
}

// customRoots returns the --ca-file roots alone, nil when none were given:
// the probe reports a chain trusted only thanks to them
// (untrusted_elsewhere) and weighs them when a chain's issuer is missing.
func customRoots(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, f := range files {
		if err := addPEMFile(pool, f); err != nil {
			return nil, err
		}
	}
	return pool, nil
}

func addPEMFile(pool *x509.CertPool, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--ca-file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("--ca-file %s: not a regular file", path)
	}
	if fi.Size() > maxCAFileSize {
		return fmt.Errorf("--ca-file %s: %d bytes, larger than %d", path, fi.Size(), maxCAFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--ca-file %s: %w", path, err)
	}
	n := 0
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("--ca-file %s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return fmt.Errorf("--ca-file %s: no PEM CERTIFICATE block found", path)
	}
	return nil
}
