package main

import (
	"errors"
	"fmt"

	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// credentials are what serve holds on the operator's behalf: the client
// certificates and MCP tokens tools name, and every secret among them and
// the --token, hidden in whatever leaves the process.
type credentials struct {
	mcpTokens map[string]string
	secrets   *redact.Set
}

// loadCredentials loads the MCP tokens and gathers every secret, with the
// client certificates probeSetup loaded.
func loadCredentials(cfg Config, certs map[string]watch.ClientCert) (credentials, error) {
	tokens, err := loadMCPTokens(cfg.MCPTokens)
	if err != nil {
		return credentials{}, err
	}
	own := []string{cfg.Token, cfg.IntrospectClientSecret}
	return credentials{tokens, secretSet(own, tokens, certs)}, nil
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
func secretSet(own []string, mcpTokens map[string]string, certs map[string]watch.ClientCert) *redact.Set {
	tokens := append([]string(nil), own...)
	for _, tok := range mcpTokens {
		tokens = append(tokens, tok)
	}
	var material []string
	for _, c := range certs {
		material = append(material, redact.KeyMaterial(c.Pair.PrivateKey)...)
	}
	return redact.New(tokens...).WithMaterial(material...)
}
