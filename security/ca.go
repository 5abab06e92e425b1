package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Default lifetimes of certificates made by [CA].
const (
	DefaultCALifetime   = 365 * 24 * time.Hour
	DefaultLeafLifetime = 24 * time.Hour
)

// File names used by [CA.Save], [LoadCA] and [CA.IssueFiles]. The CA's
// own certificate and the trust bundle are separate files so that a
// bundle can hold an old and a new root during a root rotation.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
	BundleFile = "bundle.pem"
)

// KeyType selects the key algorithm of an issued certificate.
type KeyType string

// Key types a [CA] can issue. ECDSA P-256 is the default.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyEd25519   KeyType = "ed25519"
	KeyRSA2048   KeyType = "rsa-2048"
)

// CA is a development certificate authority: an ECDSA P-256 root whose URI
// SAN names its trust domain, issuing workload certificates for services of
// that trust domain. It is safe for concurrent use.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

// NewCA creates a new root for trustDomain (for example "moat.local").
func NewCA(trustDomain string) (*CA, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("security: trust domain %q: %w", trustDomain, err)
	}
	if td.Name() != trustDomain {
		return nil, fmt.Errorf("security: trust domain %q must be a plain name such as %q, "+
			"without scheme or path", trustDomain, td.Name())
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("security: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{Organization: []string{"moat dev CA"}, CommonName: "moat dev root " + td.String()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(DefaultCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("security: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("security: parse CA certificate: %w", err)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// LoadCA reads a CA written by [CA.Save] from dir.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := readFile(filepath.Join(dir, CACertFile), "the CA certificate",
		"create one with 'moat certs init'")
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(filepath.Join(dir, CAKeyFile), "the CA key",
		"create one with 'moat certs init'")
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(certPEM, filepath.Join(dir, CACertFile), ReasonMalformed)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM, filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, refuse(ReasonMalformed, filepath.Join(dir, CACertFile), "certificate is not a CA")
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, refuse(ReasonKeyMismatch, filepath.Join(dir, CAKeyFile),
			"key does not belong to the CA certificate")
	}
	var td spiffeid.TrustDomain
	for _, u := range cert.URIs {
		if t, err := spiffeid.TrustDomainFromURI(u); err == nil {
			td = t
		}
	}
	if td.IsZero() {
		return nil, refuse(ReasonNoSPIFFEID, filepath.Join(dir, CACertFile),
			"CA certificate names no trust domain; create it with 'moat certs init'")
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// TrustDomain returns the trust domain the CA issues for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Certificate returns the CA's root certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the root certificate in PEM form: the trust bundle.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// Save writes the root certificate and key into dir, the key readable by
// its owner only, and a trust bundle of this root when dir has none.
func (ca *CA) Save(dir string) error {
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("security: create %s: %w", dir, err)
	}
	if err := writeFile(filepath.Join(dir, CACertFile), ca.CertPEM(), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, BundleFile)); errors.Is(err, os.ErrNotExist) {
		return WriteBundle(dir, ca)
	}
	return nil
}

// WriteBundle replaces the trust bundle in dir with the roots of cas,
// atomically.
func WriteBundle(dir string, cas ...*CA) error {
	var pemData []byte
	for _, ca := range cas {
		pemData = append(pemData, ca.CertPEM()...)
	}
	return writeFile(filepath.Join(dir, BundleFile), pemData, 0o644)
}

// IssueOption changes a certificate made by [CA.Issue].
type IssueOption interface{ applyIssue(*issueConfig) }

type issueConfig struct {
	notBefore, notAfter time.Time
	keyType             KeyType
}

type issueFunc func(*issueConfig)

func (f issueFunc) applyIssue(c *issueConfig) { f(c) }

// WithLifetime sets the validity of the certificate from now; the default
// is [DefaultLeafLifetime].
func WithLifetime(d time.Duration) IssueOption {
	return issueFunc(func(c *issueConfig) {
		c.notBefore = time.Now().Add(-time.Minute)
		c.notAfter = time.Now().Add(d)
	})
}

// WithValidity sets the exact validity window of the certificate.
func WithValidity(notBefore, notAfter time.Time) IssueOption {
	return issueFunc(func(c *issueConfig) { c.notBefore, c.notAfter = notBefore, notAfter })
}

// WithKeyType selects the leaf's key algorithm; the default is
// [KeyECDSAP256].
func WithKeyType(k KeyType) IssueOption {
	return issueFunc(func(c *issueConfig) { c.keyType = k })
}

// Issued is a workload certificate with its private key, both PEM encoded.
type Issued struct {
	CertPEM []byte
	KeyPEM  []byte
	Leaf    *x509.Certificate
}

// Issue makes a workload certificate for service: URI SAN
// spiffe://<trust-domain>/svc/<service>, DNS SAN localhost and IP SANs
// 127.0.0.1 and ::1 for local use, usable for both server and client
// authentication.
func (ca *CA) Issue(service string, opts ...IssueOption) (*Issued, error) {
	id, err := ServiceID(ca.td.Name(), service)
	if err != nil {
		return nil, err
	}
	cfg := issueConfig{keyType: KeyECDSAP256}
	WithLifetime(DefaultLeafLifetime).applyIssue(&cfg)
	for _, o := range opts {
		o.applyIssue(&cfg)
	}
	if !cfg.notAfter.After(cfg.notBefore) {
		return nil, fmt.Errorf("security: certificate for %q would end (%s) before it starts (%s); "+
			"give a positive lifetime", service, cfg.notAfter.UTC().Format(time.RFC3339),
			cfg.notBefore.UTC().Format(time.RFC3339))
	}
	if cfg.notAfter.After(ca.cert.NotAfter) {
		return nil, fmt.Errorf("security: certificate for %q would outlive its CA, which expires at %s; "+
			"give a shorter lifetime or rotate the root", service, ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}

	key, err := generateKey(cfg.keyType)
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageDigitalSignature
	if cfg.keyType == KeyRSA2048 {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{Organization: []string{"moat"}, CommonName: service},
		NotBefore:             cfg.notBefore,
		NotAfter:              cfg.notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("security: issue certificate for %q: %w", service, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("security: parse issued certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Issued{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  keyPEM,
		Leaf:    leaf,
	}, nil
}

// Identity issues a certificate for service and returns it as an
// [Identity] trusting only this CA: the quickest way to give tests and
// single-process programs a real identity.
func (ca *CA) Identity(service string, opts ...IssueOption) (*Identity, error) {
	is, err := ca.Issue(service, opts...)
	if err != nil {
		return nil, err
	}
	return NewIdentity(is.CertPEM, is.KeyPEM, ca.CertPEM())
}

// IdentityFiles names the three PEM files of a workload identity.
type IdentityFiles struct {
	Cert, Key, Bundle string
}

// FilesFor returns where [IssueFiles] writes the identity of service in dir.
func FilesFor(dir, service string) IdentityFiles {
	return IdentityFiles{
		Cert:   filepath.Join(dir, service+".pem"),
		Key:    filepath.Join(dir, service+"-key.pem"),
		Bundle: filepath.Join(dir, BundleFile),
	}
}

// IssueFiles issues a certificate for service and writes it with its key
// into dir, next to the CA's bundle, replacing the files atomically.
func (ca *CA) IssueFiles(dir, service string, opts ...IssueOption) (IdentityFiles, error) {
	if reserved(service) {
		return IdentityFiles{}, fmt.Errorf("security: %q cannot be a service name in a certificates "+
			"folder: its files would overwrite the CA, the bundle, the revocation list or a key", service)
	}
	is, err := ca.Issue(service, opts...)
	if err != nil {
		return IdentityFiles{}, err
	}
	files := FilesFor(dir, service)
	if err := writeFile(files.Key, is.KeyPEM, 0o600); err != nil {
		return IdentityFiles{}, err
	}
	if err := writeFile(files.Cert, is.CertPEM, 0o644); err != nil {
		return IdentityFiles{}, err
	}
	if _, err := os.Stat(files.Bundle); errors.Is(err, os.ErrNotExist) {
		if err := writeFile(files.Bundle, ca.CertPEM(), 0o644); err != nil {
			return IdentityFiles{}, err
		}
	}
	return files, nil
}

func generateKey(k KeyType) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch k {
	case KeyECDSAP256, "":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case KeyRSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("security: unknown key type %q (want %s, %s or %s)",
			k, KeyECDSAP256, KeyEd25519, KeyRSA2048)
	}
	if err != nil {
		return nil, fmt.Errorf("security: generate %s key: %w", k, err)
	}
	return key, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("security: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() *big.Int {
	// 128 random bits: unique serials without coordination between issuers.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic("security: crypto/rand failed: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}

// writeFile replaces path atomically: readers see the old or the new file,
// never a half-written one.
func writeFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("security: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("security: write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("security: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("security: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("security: write %s: %w", path, err)
	}
	return nil
}

// reserved reports names whose files would collide with the CA folder's own.
func reserved(service string) bool {
	switch service {
	case "ca", "bundle", "crl":
		return true
	}
	return strings.HasSuffix(service, "-key")
}
