package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Identity is a workload's X.509 identity: its certificate chain and key,
// the SPIFFE ID the leaf carries, and the trust bundle it verifies peers
// against. An Identity is immutable and safe for concurrent use.
type Identity struct {
	id      spiffeid.ID
	service string
	cert    tls.Certificate
	roots   []*x509.Certificate
	pool    *x509.CertPool
}

// Source gives the identity to use for the next handshake. Implementations
// that rotate material return the newest valid identity; they must be safe
// for concurrent use. An *[Identity] is a Source that never changes.
type Source interface {
	Current() *Identity
}

// Current returns i itself, so that a fixed identity is a [Source].
func (i *Identity) Current() *Identity { return i }

// ID returns the SPIFFE ID of the workload.
func (i *Identity) ID() spiffeid.ID { return i.id }

// Service returns the service name in the workload's SPIFFE ID.
func (i *Identity) Service() string { return i.service }

// TrustDomain returns the workload's trust domain.
func (i *Identity) TrustDomain() spiffeid.TrustDomain { return i.id.TrustDomain() }

// Leaf returns the workload's own certificate.
func (i *Identity) Leaf() *x509.Certificate { return i.cert.Leaf }

// TLSCertificate returns the chain and key for crypto/tls.
func (i *Identity) TLSCertificate() *tls.Certificate { return &i.cert }

// Bundle returns the roots that peers' certificates must chain to.
func (i *Identity) Bundle() *x509.CertPool { return i.pool }

// Roots returns the certificates of the trust bundle.
func (i *Identity) Roots() []*x509.Certificate { return append([]*x509.Certificate(nil), i.roots...) }

// LoadOption changes how [LoadIdentity] and [NewIdentity] check material.
type LoadOption interface{ applyLoad(*loadConfig) }

type loadConfig struct {
	trustDomain string
	now         func() time.Time
}

type loadFunc func(*loadConfig)

func (f loadFunc) applyLoad(c *loadConfig) { f(c) }

// WithTrustDomain requires the workload certificate to belong to
// trustDomain. Without it, the trust domain named by the bundle's roots is
// required when they name one.
func WithTrustDomain(trustDomain string) LoadOption {
	return loadFunc(func(c *loadConfig) { c.trustDomain = trustDomain })
}

// WithClock sets the time used to check validity; for tests.
func WithClock(now func() time.Time) LoadOption {
	return loadFunc(func(c *loadConfig) { c.now = now })
}

// LoadIdentity reads a workload identity from PEM files: certFile holds the
// leaf first and any intermediates after it, keyFile the matching private
// key, bundleFile the trusted roots. Each defect is refused with an [*Error]
// naming the file, the problem and the fix.
func LoadIdentity(certFile, keyFile, bundleFile string, opts ...LoadOption) (*Identity, error) {
	certPEM, err := readFile(certFile, "the workload certificate",
		"issue one with 'moat certs issue <service>'")
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(keyFile, "the workload key",
		"it is written next to the certificate by 'moat certs issue <service>'")
	if err != nil {
		return nil, err
	}
	bundlePEM, err := readFile(bundleFile, "the trust bundle",
		"it is the CA certificate written by 'moat certs init'")
	if err != nil {
		return nil, err
	}
	return newIdentity(certPEM, keyPEM, bundlePEM, IdentityFiles{certFile, keyFile, bundleFile}, opts)
}

// NewIdentity builds an identity from PEM bytes, with the same checks as
// [LoadIdentity].
func NewIdentity(certPEM, keyPEM, bundlePEM []byte, opts ...LoadOption) (*Identity, error) {
	names := IdentityFiles{Cert: "certificate", Key: "key", Bundle: "trust bundle"}
	return newIdentity(certPEM, keyPEM, bundlePEM, names, opts)
}

func newIdentity(certPEM, keyPEM, bundlePEM []byte, names IdentityFiles, opts []LoadOption) (*Identity, error) {
	cfg := loadConfig{now: time.Now}
	for _, o := range opts {
		o.applyLoad(&cfg)
	}

	chain, err := parseCerts(certPEM, names.Cert, ReasonMalformed)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM, names.Key)
	if err != nil {
		return nil, err
	}
	roots, err := parseCerts(bundlePEM, names.Bundle, ReasonEmptyBundle)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, refuse(ReasonKeyMismatch, names.Key,
			"private key does not match the certificate in %s; use the key written with it "+
				"by 'moat certs issue'", names.Cert)
	}
	want, err := wantTrustDomain(cfg.trustDomain, roots, names.Bundle)
	if err != nil {
		return nil, err
	}
	id, verr := checkLeaf(leaf, chain[1:], roots, want, cfg.now(), names.Cert)
	if verr != nil {
		return nil, verr
	}
	if err := checkEKU(leaf, names.Cert, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}

	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	service, _ := ServiceOf(id)
	return &Identity{
		id:      id,
		service: service,
		cert:    tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf},
		roots:   roots,
		pool:    pool,
	}, nil
}

// checkLeaf applies the checks shared by loading and handshakes: not a CA,
// in its validity window, strong key, a SPIFFE ID of the wanted trust
// domain, and a chain to roots.
func checkLeaf(
	leaf *x509.Certificate,
	intermediates, roots []*x509.Certificate,
	want spiffeid.TrustDomain,
	now time.Time,
	subject string,
) (spiffeid.ID, *Error) {
	id, err := checkLeafFields(leaf, want, now, subject)
	if err != nil {
		return spiffeid.ID{}, err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	if _, err := verifyChain(leaf, intermediates, pool, now, subject); err != nil {
		return spiffeid.ID{}, err
	}
	return id, nil
}

// checkLeafFields applies the checks of checkLeaf that read the leaf
// alone: everything but the chain.
func checkLeafFields(
	leaf *x509.Certificate,
	want spiffeid.TrustDomain,
	now time.Time,
	subject string,
) (spiffeid.ID, *Error) {
	if leaf.IsCA {
		return spiffeid.ID{}, refuse(ReasonCAAsLeaf, subject,
			"a CA certificate (%q) cannot be a workload certificate; issue a leaf with "+
				"'moat certs issue <service>'", leaf.Subject.CommonName)
	}
	if now.Before(leaf.NotBefore) {
		return spiffeid.ID{}, refuse(ReasonNotYetValid, subject,
			"certificate is not valid before %s (now %s); check the clock or reissue it",
			leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return spiffeid.ID{}, refuse(ReasonExpired, subject,
			"certificate expired at %s; reissue it with 'moat certs issue <service>'",
			leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := checkKeyStrength(leaf.PublicKey, subject); err != nil {
		return spiffeid.ID{}, err
	}
	id, err := idFromCert(leaf, subject)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if !want.IsZero() && id.TrustDomain() != want {
		return spiffeid.ID{}, refuse(ReasonWrongTrustDomain, subject,
			"certificate belongs to trust domain %q, want %q; issue it from the CA of %q",
			id.TrustDomain().Name(), want.Name(), want.Name())
	}
	return id, nil
}

// verifyChain checks that leaf chains to roots through intermediates at
// now, and returns the window of time in which every certificate of the
// chain found is valid.
func verifyChain(
	leaf *x509.Certificate,
	intermediates []*x509.Certificate,
	roots *x509.CertPool,
	now time.Time,
	subject string,
) (validity [2]time.Time, err *Error) {
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	chains, verr := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if verr != nil {
		return validity, &Error{
			Reason: ReasonUntrusted, Subject: subject, Err: verr,
			Detail: "certificate does not chain to the trust bundle; " +
				"issue it from the CA in the bundle or add its CA to the bundle",
		}
	}
	validity = [2]time.Time{leaf.NotBefore, leaf.NotAfter}
	for _, c := range chains[0] {
		if c.NotBefore.After(validity[0]) {
			validity[0] = c.NotBefore
		}
		if c.NotAfter.Before(validity[1]) {
			validity[1] = c.NotAfter
		}
	}
	return validity, nil
}

func checkEKU(leaf *x509.Certificate, subject string, want ...x509.ExtKeyUsage) *Error {
	for _, w := range want {
		found := false
		for _, u := range leaf.ExtKeyUsage {
			if u == w || u == x509.ExtKeyUsageAny {
				found = true
			}
		}
		if !found {
			name := "serverAuth"
			if w == x509.ExtKeyUsageClientAuth {
				name = "clientAuth"
			}
			return refuse(ReasonMissingEKU, subject,
				"certificate lacks the %s extended key usage; moat workload certificates need "+
					"serverAuth and clientAuth, as 'moat certs issue' makes them", name)
		}
	}
	return nil
}

func checkKeyStrength(pub any, subject string) *Error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return refuse(ReasonWeakKey, subject,
				"RSA key of %d bits is too weak, use at least 2048 bits or ECDSA P-256",
				k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return refuse(ReasonWeakKey, subject,
				"ECDSA curve %s is not allowed, use P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return refuse(ReasonWeakKey, subject, "unsupported public key type %T", pub)
	}
	return nil
}

// wantTrustDomain returns the trust domain a leaf must belong to: the one
// asked for, else the one the bundle's roots name (all must agree).
func wantTrustDomain(asked string, roots []*x509.Certificate, subject string) (spiffeid.TrustDomain, error) {
	if asked != "" {
		td, err := spiffeid.TrustDomainFromString(asked)
		if err != nil {
			return spiffeid.TrustDomain{}, fmt.Errorf("security: trust domain %q: %w", asked, err)
		}
		return td, nil
	}
	var found spiffeid.TrustDomain
	for _, r := range roots {
		for _, u := range r.URIs {
			td, err := spiffeid.TrustDomainFromURI(u)
			if err != nil {
				continue
			}
			if !found.IsZero() && found != td {
				return spiffeid.TrustDomain{}, refuse(ReasonWrongTrustDomain, subject,
					"bundle names trust domains %q and %q; say which one with the trust domain option",
					found.Name(), td.Name())
			}
			found = td
		}
	}
	return found, nil
}

func readFile(path, what, fix string) ([]byte, error) {
	if path == "" {
		return nil, refuse(ReasonMissingFile, what, "no file given; %s", fix)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &Error{
			Reason: ReasonMissingFile, Subject: path, Err: err,
			Detail: fmt.Sprintf("%s does not exist; %s", what, fix),
		}
	}
	if err != nil {
		return nil, &Error{Reason: ReasonMissingFile, Subject: path, Err: err,
			Detail: "cannot read " + what}
	}
	return data, nil
}

// ParseCertificates reads every PEM CERTIFICATE block of data, in order.
// Data without one is refused with an [*Error] of reason [ReasonMalformed].
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	return parseCerts(data, "PEM data", ReasonMalformed)
}

// parseCerts reads the CERTIFICATE blocks of data; none is refused with
// reason none.
func parseCerts(data []byte, subject string, none Reason) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &Error{Reason: ReasonMalformed, Subject: subject, Err: err,
				Detail: "a CERTIFICATE block does not parse"}
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, refuse(none, subject, "no PEM CERTIFICATE block found")
	}
	return certs, nil
}

func parseKey(data []byte, subject string) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, refuse(ReasonMalformed, subject, "no PEM private key block found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, &Error{Reason: ReasonMalformed, Subject: subject, Err: err,
				Detail: "private key does not parse"}
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, refuse(ReasonMalformed, subject, "unsupported private key type %T", key)
		}
		return signer, nil
	}
}

func publicKeysEqual(a, b any) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
