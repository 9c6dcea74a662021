package probe

// Finding codes of DESIGN.md. They are stable: clients switch on them.
const (
	CodeDNSError             = "dns_error"
	CodeConnectionRefused    = "connection_refused"
	CodeTimeout              = "timeout"
	CodeNotTLS               = "not_tls"
	CodeHandshakeFailed      = "handshake_failed"
	CodeExpired              = "expired"
	CodeNotYetValid          = "not_yet_valid"
	CodeExpiringSoon         = "expiring_soon"
	CodeHostnameMismatch     = "hostname_mismatch"
	CodeCNOnly               = "cn_only"
	CodeIncompleteChain      = "incomplete_chain"
	CodeUntrustedRoot        = "untrusted_root"
	CodeSelfSigned           = "self_signed"
	CodeExpiredIntermediate  = "expired_intermediate"
	CodeDeprecatedProtocol   = "deprecated_protocol"
	CodeWeakKey              = "weak_key"
	CodeWeakSignature        = "weak_signature"
	CodeRevoked              = "revoked"
	CodeClientCertRequired   = "client_cert_required"
	CodeRootInChain          = "root_in_chain"
	CodeChainOrder           = "chain_order"
	CodeNoOCSPStaple         = "no_ocsp_staple"
	CodeMustStapleMissing    = "must_staple_missing"
	CodeOCSPUnavailable      = "ocsp_unavailable"
	CodeNoSCT                = "no_sct"
	CodeWeakCipher           = "weak_cipher"
	CodeInconsistentBackends = "inconsistent_backends"
	CodeUntrustedElsewhere   = "untrusted_elsewhere"
	CodeClientCertExpiring   = "client_cert_expiring"
	CodeNotMCP               = "not_mcp"
	CodeMCPAuthRequired      = "mcp_auth_required"
	CodeTargetBlocked        = "target_blocked"

	// Additive: a chain crypto/x509 rejects for a
	// reason none of the codes above names (key usage, name constraints,
	// path length, a non-CA issuer).
	CodeInvalidChain = "invalid_chain"

	// Additive: the server refused the client certificate presented (TLS
	// 1.3 says so after the handshake); TCP accepted, then reset during the
	// handshake; DHE with a group under 2048 bits.
	CodeClientCertRejected = "client_cert_rejected"
	CodeConnectionReset    = "connection_reset"
	CodeWeakDH             = "weak_dh"

	// Short-lived certificates: the renewal automation, the CA's own
	// renewal advice (ACME ARI), what sits above the leaf, and CAA.
	CodeRenewalOverdue       = "renewal_overdue"
	CodeRenewalSuggested     = "renewal_suggested"
	CodeIntermediateExpiring = "intermediate_expiring"
	CodeCAAMismatch          = "caa_mismatch"
)

// The MCP authorization chain (check_mcp_endpoint after a 401) and
// MCP-level watches.
const (
	CodeAuthMetadataMissing     = "auth_metadata_missing"
	CodeAuthResourceMismatch    = "auth_resource_mismatch"
	CodeAuthServersMissing      = "auth_servers_missing"
	CodeAuthServerMetadata      = "auth_server_metadata"
	CodeAuthIssuerMismatch      = "auth_issuer_mismatch"
	CodeAuthPKCEMissing         = "auth_pkce_missing"
	CodeAuthRegistrationMissing = "auth_registration_missing"
	CodeAuthScopeUnknown        = "auth_scope_unknown"
	CodeAuthServerTLS           = "auth_server_tls"
	CodeMCPToolsChanged         = "mcp_tools_changed"
)

// CodeInfo pairs a code with its fixed severity, a short title and what to do
// about it, so text and JSON output share one source. Severity is empty for
// codes whose severity depends on what was found; Graded then says how.
type CodeInfo struct {
	Code     string
	Severity Severity
	Title    string
	Fix      string
	Graded   string
}

// Gradings of the codes without a fixed severity.
const (
	gradedByThresholds = "by the thresholds: info ≤30d, warning ≤14d, critical ≤7d"
	gradedByProfile    = "warning for suites outside Mozilla's old profile or no forward secrecy at all; info for suites that only miss intermediate"
	gradedByStore      = "warning; info when only the operator's own --ca-file roots make the difference"
	gradedByLifetime   = "warning; critical under 10% of the lifetime left"
	gradedByChainLeft  = "warning ≤30d (the largest threshold), critical ≤7d"
)

// Codes is the one table of finding codes.
var Codes = map[string]CodeInfo{
	CodeDNSError:             {CodeDNSError, SeverityCritical, "name does not resolve", "Check the DNS records for the host (A/AAAA) and the spelling of the target.", ""},
	CodeConnectionRefused:    {CodeConnectionRefused, SeverityCritical, "connection refused", "Nothing listens on that port, or a firewall rejects it: check the server process and the port.", ""},
	CodeTimeout:              {CodeTimeout, SeverityCritical, "no answer in time", "A firewall may drop packets, or the server is overloaded: check reachability from the agent's network.", ""},
	CodeNotTLS:               {CodeNotTLS, SeverityCritical, "not TLS", "The port answers in plain text (often HTTP): point agents at the TLS port or enable TLS on this one.", ""},
	CodeHandshakeFailed:      {CodeHandshakeFailed, SeverityCritical, "TLS handshake failed", "Enable TLS 1.2 and 1.3 with modern cipher suites on the server.", ""},
	CodeExpired:              {CodeExpired, SeverityCritical, "certificate expired", "Renew the certificate now and reload the server; then fix the renewal job that failed.", ""},
	CodeNotYetValid:          {CodeNotYetValid, SeverityCritical, "certificate not yet valid", "Check the server clock and the certificate's not_before; serve the previous certificate until then.", ""},
	CodeExpiringSoon:         {CodeExpiringSoon, "", "certificate expiring soon", "Renew the certificate before it expires and check that automatic renewal runs.", gradedByThresholds},
	CodeHostnameMismatch:     {CodeHostnameMismatch, SeverityCritical, "name mismatch", "Issue a certificate whose SANs include this host name, or serve the right certificate for this SNI.", ""},
	CodeCNOnly:               {CodeCNOnly, SeverityCritical, "no SAN extension", "Reissue the certificate with the host name in the Subject Alternative Name extension; clients ignore the CN.", ""},
	CodeIncompleteChain:      {CodeIncompleteChain, SeverityCritical, "incomplete chain", "Serve the full chain (leaf then intermediates), e.g. fullchain.pem instead of cert.pem.", ""},
	CodeUntrustedRoot:        {CodeUntrustedRoot, SeverityCritical, "untrusted root", "Use a certificate from a publicly trusted CA, or distribute the private root to every client (--ca-file).", ""},
	CodeSelfSigned:           {CodeSelfSigned, SeverityCritical, "self-signed certificate", "Replace the self-signed certificate with one from a trusted CA (e.g. Let's Encrypt).", ""},
	CodeExpiredIntermediate:  {CodeExpiredIntermediate, SeverityCritical, "expired intermediate", "Replace the expired intermediate in the served chain with the CA's current one.", ""},
	CodeDeprecatedProtocol:   {CodeDeprecatedProtocol, SeverityWarning, "deprecated protocol accepted", "Disable TLS 1.0 and 1.1; keep TLS 1.2 and 1.3.", ""},
	CodeWeakKey:              {CodeWeakKey, SeverityWarning, "weak key", "Reissue with an RSA key of at least 2048 bits or an ECDSA P-256 key.", ""},
	CodeWeakSignature:        {CodeWeakSignature, SeverityCritical, "weak signature", "Reissue the certificate (and intermediates) signed with SHA-256 or better.", ""},
	CodeRevoked:              {CodeRevoked, SeverityCritical, "certificate revoked", "Issue and deploy a new certificate; the CA has revoked this one.", ""},
	CodeClientCertRequired:   {CodeClientCertRequired, SeverityInfo, "client certificate required", "Agents must present a client certificate (mTLS) accepted by the server.", ""},
	CodeRootInChain:          {CodeRootInChain, SeverityInfo, "root served", "Drop the root from the served chain: clients use their own copy; it only costs bytes.", ""},
	CodeChainOrder:           {CodeChainOrder, SeverityWarning, "chain out of order", "Serve the leaf first, then each issuer in order, without duplicates or unrelated certificates.", ""},
	CodeNoOCSPStaple:         {CodeNoOCSPStaple, SeverityInfo, "no OCSP staple", "Enable OCSP stapling on the server.", ""},
	CodeMustStapleMissing:    {CodeMustStapleMissing, SeverityCritical, "must-staple without staple", "The certificate demands OCSP stapling: enable stapling or reissue without the TLS feature extension.", ""},
	CodeOCSPUnavailable:      {CodeOCSPUnavailable, SeverityWarning, "revocation source unavailable", "The OCSP responder or CRL named in the certificate could not be used; check again later.", ""},
	CodeNoSCT:                {CodeNoSCT, SeverityInfo, "no SCTs", "Use a certificate logged in Certificate Transparency; CT-enforcing browsers reject it.", ""},
	CodeWeakCipher:           {CodeWeakCipher, "", "weak cipher accepted", "Offer ECDHE with AES-GCM or ChaCha20-Poly1305 (Mozilla's intermediate profile); disable RC4, export, NULL, anonymous and single-DES suites, and keep CBC, 3DES and RSA key exchange only for clients that need them.", gradedByProfile},
	CodeInconsistentBackends: {CodeInconsistentBackends, SeverityWarning, "inconsistent backends", "Deploy the same certificate on every address behind the name.", ""},
	CodeUntrustedElsewhere:   {CodeUntrustedElsewhere, "", "trust differs between stores", "Use a CA trusted by every common store, or configure agents with the needed roots.", gradedByStore},
	CodeClientCertExpiring:   {CodeClientCertExpiring, "", "client certificate expiring", "Renew the client certificate that tlswatch presents.", gradedByThresholds},
	CodeNotMCP:               {CodeNotMCP, SeverityCritical, "not an MCP server", "Check the URL path (often /mcp) and that the MCP server is running behind it.", ""},
	CodeMCPAuthRequired:      {CodeMCPAuthRequired, SeverityInfo, "MCP authorization required", "The server requires authorization: pass a token or complete the OAuth flow.", ""},
	CodeTargetBlocked:        {CodeTargetBlocked, SeverityCritical, "target blocked by policy", "The operator's outbound policy forbids this address.", ""},
	CodeInvalidChain:         {CodeInvalidChain, SeverityCritical, "chain rejected", "Reissue the certificate (or fix the CA chain) so that it is valid for TLS server authentication under the CA's constraints.", ""},
	CodeClientCertRejected:   {CodeClientCertRejected, SeverityCritical, "client certificate refused", "Present a client certificate the server accepts: issued by one of its acceptable CAs, valid now, and sent with its intermediates.", ""},
	CodeConnectionReset:      {CodeConnectionReset, SeverityCritical, "connection reset", "The port accepts TCP, then something resets the connection during the TLS handshake: check that the TLS listener loads its certificate and key, and any firewall or load balancer in front of it.", ""},
	CodeWeakDH:               {CodeWeakDH, SeverityWarning, "weak DH group", "Use a DH group of at least 2048 bits (ffdhe2048) for DHE suites, or disable DHE and keep ECDHE.", ""},
	CodeRenewalOverdue:       {CodeRenewalOverdue, "", "renewal overdue", "Check the ACME client or renewal job (logs, timer, credentials, DNS/HTTP challenge reachability) and renew now; it should have replaced this certificate at two thirds of its lifetime.", gradedByLifetime},
	CodeRenewalSuggested:     {CodeRenewalSuggested, SeverityWarning, "CA suggests renewal now", "The CA's renewal window (ACME ARI) has started, often after a revocation event: renew now; ARI-aware clients (certbot 2.8+, cert-manager, Caddy, lego) do it on their own.", ""},
	CodeIntermediateExpiring: {CodeIntermediateExpiring, "", "chain certificate expiring", "Fetch the CA's current intermediate (or chain) and serve it with the leaf; the leaf does not need to change.", gradedByChainLeft},
	CodeCAAMismatch:          {CodeCAAMismatch, SeverityWarning, "CAA forbids the issuer", "Add a CAA issue (or issuewild) record for the CA that issues this certificate, or switch the renewal to a CA the records allow: the next renewal will be refused.", ""},

	CodeAuthMetadataMissing:     {CodeAuthMetadataMissing, SeverityWarning, "no protected-resource metadata", "Serve RFC 9728 metadata at /.well-known/oauth-protected-resource/<path> and name it in the 401's WWW-Authenticate resource_metadata; without it OAuth clients cannot find the authorization server (fine only for pre-issued tokens).", ""},
	CodeAuthResourceMismatch:    {CodeAuthResourceMismatch, SeverityCritical, "metadata for another resource", "Set the metadata's resource to the endpoint's canonical URL (scheme, host, port, path as agents use it); clients refuse metadata for another resource.", ""},
	CodeAuthServersMissing:      {CodeAuthServersMissing, SeverityCritical, "no authorization server named", "List the issuer URL of the authorization server in the metadata's authorization_servers.", ""},
	CodeAuthServerMetadata:      {CodeAuthServerMetadata, SeverityCritical, "authorization server metadata unavailable", "Serve RFC 8414 metadata at /.well-known/oauth-authorization-server (or OpenID discovery) for the issuer, as JSON, reachable from agents.", ""},
	CodeAuthIssuerMismatch:      {CodeAuthIssuerMismatch, SeverityCritical, "issuer mismatch", "Make the metadata's issuer exactly the issuer URL the resource lists (RFC 8414 section 3.3); clients refuse anything else.", ""},
	CodeAuthPKCEMissing:         {CodeAuthPKCEMissing, SeverityCritical, "PKCE S256 not offered", "Enable PKCE with S256 on the authorization server and list it in code_challenge_methods_supported; MCP clients refuse to proceed without it.", ""},
	CodeAuthRegistrationMissing: {CodeAuthRegistrationMissing, SeverityWarning, "no client registration path", "Offer client ID metadata documents (client_id_metadata_document_supported) or dynamic registration (registration_endpoint); otherwise every client must be registered by hand.", ""},
	CodeAuthScopeUnknown:        {CodeAuthScopeUnknown, SeverityWarning, "scope unknown to the authorization server", "List every scope the resource asks for in the authorization server's scopes_supported, or stop advertising it on the resource.", ""},
	CodeAuthServerTLS:           {CodeAuthServerTLS, SeverityCritical, "authorization chain TLS broken", "Fix the certificate of the authorization-chain host named (see its findings): agents fail at sign-in before they reach the MCP server.", ""},
	CodeMCPToolsChanged:         {CodeMCPToolsChanged, SeverityWarning, "MCP tools changed", "Review the tools added, removed or changed before agents rely on them; expected after a deploy of the server.", ""},
}

// NewFinding builds a finding with the table's severity for code.
func NewFinding(code, message string) Finding {
	return Finding{Code: code, Severity: Codes[code].Severity, Message: message}
}
