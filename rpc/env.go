package rpc

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moatrpc/moat/security"
)

// Environment variables read by [WithEnv]; 'moat dev' prints them.
const (
	// EnvCertsDir is a folder holding <service>.pem, <service>-key.pem
	// and ca.pem, as 'moat certs' writes them.
	EnvCertsDir = "MOAT_CERTS_DIR"
	// EnvCert, EnvKey and EnvBundle name the identity files directly and
	// take precedence over EnvCertsDir.
	EnvCert   = "MOAT_CERT"
	EnvKey    = "MOAT_KEY"
	EnvBundle = "MOAT_BUNDLE"
	// EnvTrustDomain requires the identity's trust domain.
	EnvTrustDomain = "MOAT_TRUST_DOMAIN"
	// EnvConsulAddr is the host:port of a Consul agent's HTTPS API; when
	// set, the service registers there.
	EnvConsulAddr = "MOAT_CONSUL_ADDR"
	// EnvConsulToken and EnvConsulTokenFile give Consul's ACL token.
	EnvConsulToken     = "MOAT_CONSUL_TOKEN"
	EnvConsulTokenFile = "MOAT_CONSUL_TOKEN_FILE"
	// EnvAddress is the address to listen on.
	EnvAddress = "MOAT_ADDRESS"
	// EnvAdvertise is the address registered for the node, when other
	// services must dial something else than EnvAddress.
	EnvAdvertise = "MOAT_ADVERTISE"
	// EnvKeysetsDir is a folder of keyset files (<name>.json) for field
	// encryption; see [WithKeysetDir].
	EnvKeysetsDir = "MOAT_KEYSETS_DIR"
	// EnvNATSURL is the URL of a NATS server ("tls://host:port"); when set
	// and no broker is given with [WithBroker], the service publishes and
	// subscribes there with its own identity.
	EnvNATSURL = "MOAT_NATS_URL"
	// EnvCRLFile is a revocation list (PEM) to refuse revoked peers with;
	// see [WithRevocation].
	EnvCRLFile = "MOAT_CRL_FILE"
	// EnvMetricsAddr serves metrics over mutual TLS; see
	// [WithMetricsAddress].
	EnvMetricsAddr = "MOAT_METRICS_ADDR"
	// EnvRegisterTTL is the registration's health-check TTL, as a Go
	// duration ("15s").
	EnvRegisterTTL = "MOAT_REGISTER_TTL"
)

// WithEnv configures identity, registry and address from the environment
// variables above, as set by 'moat dev'. Variables that are not set leave
// the defaults and earlier options alone. When MOAT_CONSUL_ADDR is set and
// no registry is given with [WithRegistry], the service creates a Consul
// registry that uses its own identity, and closes it on Stop.
func WithEnv() Option {
	return optionFunc(func(o *options) {
		if td := os.Getenv(EnvTrustDomain); td != "" {
			o.trustDomain = td
		}
		files, ok := envIdentityFiles(o.name)
		if ok {
			WithIdentityFiles(files.Cert, files.Key, files.Bundle).apply(o)
		}
		if addr := os.Getenv(EnvAddress); addr != "" {
			o.address = addr
		}
		if path := os.Getenv(EnvCRLFile); path != "" {
			o.crlFile = path
		}
		if addr := os.Getenv(EnvMetricsAddr); addr != "" {
			o.metricsAddr = addr
		}
		if url := os.Getenv(EnvNATSURL); url != "" {
			o.natsURL = url
		}
		if dir := os.Getenv(EnvKeysetsDir); dir != "" && o.keyring == nil {
			o.keysetDir = dir
		}
		if addr := os.Getenv(EnvAdvertise); addr != "" {
			o.advertise = addr
		}
		if v := os.Getenv(EnvRegisterTTL); v != "" {
			ttl, err := time.ParseDuration(v)
			if err != nil || ttl <= 0 {
				o.envErr = fmt.Errorf("%s=%q is not a positive duration", EnvRegisterTTL, v)
				return
			}
			o.ttl = ttl
		}
		if consul := os.Getenv(EnvConsulAddr); consul != "" {
			token, err := envConsulToken()
			if err != nil {
				o.envErr = err
				return
			}
			o.consulAddr, o.consulToken = consul, token
		}
	})
}

func envIdentityFiles(name string) (security.IdentityFiles, bool) {
	f := security.IdentityFiles{Cert: os.Getenv(EnvCert), Key: os.Getenv(EnvKey), Bundle: os.Getenv(EnvBundle)}
	if dir := os.Getenv(EnvCertsDir); dir != "" {
		def := security.FilesFor(dir, name)
		if f.Cert == "" {
			f.Cert = def.Cert
		}
		if f.Key == "" {
			f.Key = def.Key
		}
		if f.Bundle == "" {
			f.Bundle = def.Bundle
		}
	}
	return f, f.Cert != "" || f.Key != "" || f.Bundle != ""
}

func envConsulToken() (string, error) {
	if t := os.Getenv(EnvConsulToken); t != "" {
		return t, nil
	}
	path := os.Getenv(EnvConsulTokenFile)
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("rpc: read %s (%s): %w", EnvConsulTokenFile, path, err)
	}
	return strings.TrimSpace(string(b)), nil
}
