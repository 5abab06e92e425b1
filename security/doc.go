// Package security holds moat's workload identities and the mutual TLS
// configuration built from them.
//
// Every moat workload has an X.509 certificate whose URI SAN names it:
// spiffe://<trust-domain>/svc/<service-name>. [LoadIdentity] reads such a
// certificate, its key and the trust bundle from PEM files and refuses any
// defect with an [*Error] whose [Reason] says what is wrong and how to fix it.
// [ServerTLSConfig] and [ClientTLSConfig] turn an identity into TLS 1.3
// configurations that require a client certificate and pin the identity of
// the peer: a client accepts only the service it meant to call, whatever
// address it reached, and a server accepts only callers of its trust domain.
// Both checks run in tls.Config.VerifyConnection, which crypto/tls also calls
// on resumed sessions.
//
// [CA] is a development certificate authority (ECDSA P-256) for local work
// and tests; production workloads get their certificates from the
// organisation's CA or a SPIFFE Workload API.
//
// There is no switch in this package that turns verification off.
package security
