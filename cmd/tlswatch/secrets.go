package main

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
)

// credentials are what serve holds on the operator's behalf: the client
// certificates and MCP tokens tools name, and every secret among them and
// the --token, hidden in whatever leaves the process.
type credentials struct {
	clientCerts map[string]tls.Certificate
	mcpTokens   map[string]string
	secrets     *redact.Set
}

func loadCredentials(cfg Config) (credentials, error) {
	certs, err := loadClientCerts(cfg.ClientCerts)
	if err != nil {
		return credentials{}, err
	}
	tokens, err := loadMCPTokens(cfg.MCPTokens)
	if err != nil {
		return credentials{}, err
	}
	own := []string{cfg.Token, cfg.IntrospectClientSecret}
	return credentials{certs, tokens, secretSet(own, tokens, certs)}, nil
}

// loadMCPTokens loads --mcp-token NAME=ENV_VAR|NAME=@FILE specs; errors
// name the flag and never show a token.
func loadMCPTokens(specs []string) (map[string]string, error) {
	tokens, err := mcpcheck.LoadTokens(specs)
	var fe *probe.FieldError
	if errors.As(err, &fe) {
		return nil, fmt.Errorf("--%s: %s", fe.Field, fe.Reason)
	}
	return tokens, err
}

// secretSet is every secret the operator configured: the server's own
// (--token, the introspection client secret), the MCP tokens, and the
// client certificates' private keys.
func secretSet(own []string, mcpTokens map[string]string, certs map[string]tls.Certificate) *redact.Set {
	tokens := append([]string(nil), own...)
	for _, tok := range mcpTokens {
		tokens = append(tokens, tok)
	}
	var material []string
	for _, c := range certs {
		material = append(material, redact.KeyMaterial(c.PrivateKey)...)
	}
	return redact.New(tokens...).WithMaterial(material...)
}
