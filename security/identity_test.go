package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// leafSpec describes a certificate signed by a test CA, defects included.
type leafSpec struct {
	uris      []string
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
	eku       []x509.ExtKeyUsage
	key       crypto.Signer
}

func goodSpec(t *testing.T) leafSpec {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return leafSpec{
		uris:      []string{"spiffe://moat.test/svc/greeter"},
		notBefore: time.Now().Add(-time.Hour),
		notAfter:  time.Now().Add(time.Hour),
		eku:       []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		key:       key,
	}
}

func (ca *CA) sign(t *testing.T, s leafSpec) (certPEM, keyPEM []byte) {
	t.Helper()
	var uris []*url.URL
	for _, u := range s.uris {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		uris = append(uris, p)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           s.eku,
		URIs:                  uris,
		BasicConstraintsValid: true,
		IsCA:                  s.isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, s.key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = encodeKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM
}

func TestNewIdentityRefusesEveryDefect(t *testing.T) {
	t.Parallel()
	ca, err := NewCA("moat.test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other.test")
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKeyPEM, _ := encodeKey(otherKey)

	tests := []struct {
		name   string
		mutate func(*leafSpec)
		signer *CA
		bundle []byte
		keyPEM []byte
		want   Reason
		says   string
	}{
		{name: "expired", mutate: func(s *leafSpec) {
			s.notBefore, s.notAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		}, want: ReasonExpired, says: "expired at"},
		{name: "not yet valid", mutate: func(s *leafSpec) {
			s.notBefore, s.notAfter = time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
		}, want: ReasonNotYetValid, says: "not valid before"},
		{name: "CA as leaf", mutate: func(s *leafSpec) { s.isCA = true }, want: ReasonCAAsLeaf,
			says: "cannot be a workload certificate"},
		{name: "no SPIFFE ID", mutate: func(s *leafSpec) { s.uris = nil }, want: ReasonNoSPIFFEID,
			says: "no spiffe:// URI SAN"},
		{name: "malformed SPIFFE ID", mutate: func(s *leafSpec) {
			s.uris = []string{"spiffe://moat.test/svc/Bad Name"}
		}, want: ReasonBadSPIFFEID, says: "not a valid SPIFFE ID"},
		{name: "SPIFFE ID without service", mutate: func(s *leafSpec) {
			s.uris = []string{"spiffe://moat.test/ns/default/sa/greeter"}
		}, want: ReasonBadSPIFFEID, says: "does not name a service"},
		{name: "two SPIFFE IDs", mutate: func(s *leafSpec) {
			s.uris = []string{"spiffe://moat.test/svc/a", "spiffe://moat.test/svc/b"}
		}, want: ReasonBadSPIFFEID, says: "exactly one"},
		{name: "wrong trust domain", mutate: func(s *leafSpec) {
			s.uris = []string{"spiffe://other.test/svc/greeter"}
		}, want: ReasonWrongTrustDomain, says: `want "moat.test"`},
		{name: "weak RSA key", mutate: func(s *leafSpec) { s.key = weak }, want: ReasonWeakKey,
			says: "1024 bits is too weak"},
		{name: "missing clientAuth", mutate: func(s *leafSpec) {
			s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, want: ReasonMissingEKU, says: "clientAuth"},
		{name: "missing serverAuth", mutate: func(s *leafSpec) {
			s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}, want: ReasonMissingEKU, says: "serverAuth"},
		{name: "signed by another CA", signer: other, mutate: func(*leafSpec) {},
			want: ReasonUntrusted, says: "does not chain to the trust bundle"},
		{name: "key does not match", keyPEM: otherKeyPEM, mutate: func(*leafSpec) {},
			want: ReasonKeyMismatch, says: "does not match the certificate"},
		{name: "empty bundle", bundle: []byte{}, mutate: func(*leafSpec) {},
			want: ReasonEmptyBundle, says: "no PEM CERTIFICATE"},
		{name: "garbage bundle", bundle: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
			mutate: func(*leafSpec) {}, want: ReasonMalformed, says: "does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := goodSpec(t)
			tt.mutate(&spec)
			signer := ca
			if tt.signer != nil {
				signer = tt.signer
			}
			certPEM, keyPEM := signer.sign(t, spec)
			if tt.keyPEM != nil {
				keyPEM = tt.keyPEM
			}
			bundle := ca.CertPEM()
			if tt.bundle != nil {
				bundle = tt.bundle
			}
			_, err := NewIdentity(certPEM, keyPEM, bundle)
			if err == nil {
				t.Fatal("NewIdentity accepted a defective identity")
			}
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("reason = %q, want %q (err: %v)", got, tt.want, err)
			}
			if !errors.Is(err, &sentinel{tt.want}) {
				t.Fatalf("errors.Is does not match the %q sentinel", tt.want)
			}
			if !strings.Contains(err.Error(), tt.says) || !strings.HasPrefix(err.Error(), "security: ") {
				t.Fatalf("error %q should start with 'security: ' and say %q", err, tt.says)
			}
		})
	}
}

func TestNewIdentityAcceptsGoodCertificate(t *testing.T) {
	t.Parallel()
	ca, err := NewCA("moat.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, kt := range []KeyType{KeyECDSAP256, KeyEd25519, KeyRSA2048} {
		id, err := ca.Identity("greeter", WithKeyType(kt))
		if err != nil {
			t.Fatalf("%s: %v", kt, err)
		}
		if id.ID().String() != "spiffe://moat.test/svc/greeter" || id.Service() != "greeter" {
			t.Fatalf("%s: id = %s, service %q", kt, id.ID(), id.Service())
		}
		leaf := id.Leaf()
		if leaf.NotAfter.Sub(leaf.NotBefore) < DefaultLeafLifetime {
			t.Fatalf("%s: lifetime %v, want at least %v", kt, leaf.NotAfter.Sub(leaf.NotBefore), DefaultLeafLifetime)
		}
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" || len(leaf.IPAddresses) != 2 {
			t.Fatalf("%s: SANs %v %v", kt, leaf.DNSNames, leaf.IPAddresses)
		}
	}
	if _, err := ca.Identity("greeter", WithKeyType("dsa")); err == nil {
		t.Fatal("unknown key type accepted")
	}
	if _, err := ca.Identity("Not A Name"); err == nil {
		t.Fatal("invalid service name accepted")
	}
}

func TestLoadIdentityFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := NewCA("moat.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.TrustDomain() != ca.TrustDomain() {
		t.Fatalf("loaded CA trust domain %s", loaded.TrustDomain())
	}
	files, err := loaded.IssueFiles(dir, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(files.Key); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", info.Mode(), err)
	}
	if _, err := LoadIdentity(files.Cert, files.Key, files.Bundle); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(files.Cert, files.Key, files.Bundle, WithTrustDomain("other.test")); ReasonOf(err) != ReasonWrongTrustDomain {
		t.Fatalf("required other trust domain: %v", err)
	}

	missing := filepath.Join(dir, "nope.pem")
	for _, tc := range []struct {
		name              string
		cert, key, bundle string
	}{
		{"missing cert", missing, files.Key, files.Bundle},
		{"missing key", files.Cert, missing, files.Bundle},
		{"missing bundle", files.Cert, files.Key, missing},
		{"no file given", "", files.Key, files.Bundle},
	} {
		_, err := LoadIdentity(tc.cert, tc.key, tc.bundle)
		if !errors.Is(err, ErrMissingFile) {
			t.Fatalf("%s: err = %v, want ErrMissingFile", tc.name, err)
		}
		if !strings.Contains(err.Error(), "moat certs") {
			t.Fatalf("%s: error %q does not say how to fix it", tc.name, err)
		}
	}
	if _, err := LoadCA(t.TempDir()); !errors.Is(err, ErrMissingFile) {
		t.Fatalf("LoadCA of empty dir: %v", err)
	}
}

func TestServiceNamesAndIssueLimits(t *testing.T) {
	t.Parallel()
	for _, good := range []string{"auth", "auth-v2", "eu.auth", "a1"} {
		if err := ValidateServiceName(good); err != nil {
			t.Errorf("%q refused: %v", good, err)
		}
	}
	for _, bad := range []string{"", "a..b", "a-", "a.", ".a", "1a", "Auth", "a_b", "a b", strings.Repeat("a", 64)} {
		if err := ValidateServiceName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := NewCA("spiffe://moat.test/svc/x"); err == nil || !strings.Contains(err.Error(), "plain name") {
		t.Errorf("NewCA with a URI: %v", err)
	}
	ca, _ := NewCA("moat.test")
	dir := t.TempDir()
	for _, name := range []string{"ca", "bundle", "crl", "greeter-key"} {
		if _, err := ca.IssueFiles(dir, name); err == nil {
			t.Errorf("IssueFiles(%q) accepted a name that overwrites the folder's own files", name)
		}
	}
	if _, err := ca.Issue("greeter", WithLifetime(-time.Hour)); err == nil {
		t.Error("negative lifetime accepted")
	}
	if _, err := ca.Issue("greeter", WithLifetime(10*DefaultCALifetime)); err == nil ||
		!strings.Contains(err.Error(), "outlive its CA") {
		t.Errorf("lifetime beyond the CA: %v", err)
	}
}
