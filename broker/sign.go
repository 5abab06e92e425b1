package broker

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/moatrpc/moat/security"
)

// pssOptions are the RSA-PSS parameters of event signatures.
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}

// seal builds the wire form of msg published to topic at now, signed with
// src's current workload key when src is not nil.
func seal(
	src security.Source,
	topic string,
	msg *Message,
	now time.Time,
) (*envelope, []byte, error) {
	e := &envelope{time: now.UnixNano(), header: msg.Header, body: msg.Body}
	if _, err := rand.Read(e.id[:]); err != nil {
		return nil, nil, fmt.Errorf("broker: message id: %w", err)
	}
	if err := checkHeader(msg.Header); err != nil {
		return nil, nil, err
	}
	if src == nil {
		return e, e.marshal(), nil
	}
	self := src.Current()
	cert := self.TLSCertificate()
	key, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("broker: workload key of type %T cannot sign", cert.PrivateKey)
	}
	e.publisher = self.ID().String()
	e.chain = cert.Certificate
	d := e.digest(topic)
	sig, err := signDigest(key, d[:])
	if err != nil {
		return nil, nil, err
	}
	e.signature = sig
	return e, e.marshal(), nil
}

func checkHeader(h map[string]string) error {
	if len(h) > maxHeaderKeys {
		return fmt.Errorf("broker: %d header entries, at most %d", len(h), maxHeaderKeys)
	}
	for k := range h {
		if k == "" {
			return errors.New("broker: empty header key")
		}
	}
	return nil
}

// signDigest signs a SHA-256 digest: ECDSA (ASN.1), RSA-PSS with a salt as
// long as the hash, or Ed25519 over the 32 digest bytes.
func signDigest(key crypto.Signer, d []byte) ([]byte, error) {
	var opts crypto.SignerOpts
	switch key.Public().(type) {
	case *ecdsa.PublicKey:
		opts = crypto.SHA256
	case *rsa.PublicKey:
		opts = pssOptions
	case ed25519.PublicKey:
		opts = crypto.Hash(0)
	default:
		return nil, fmt.Errorf("broker: cannot sign with a %T key", key.Public())
	}
	sig, err := key.Sign(rand.Reader, d, opts)
	if err != nil {
		return nil, fmt.Errorf("broker: sign event: %w", err)
	}
	return sig, nil
}

// verifySignature checks a signature made by signDigest; the algorithm
// follows from the certificate's key, never from the envelope.
func verifySignature(pub crypto.PublicKey, d, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, d, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPSS(k, crypto.SHA256, d, sig, pssOptions) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, d, sig)
	}
	return false
}

// maxTrusted bounds the cache of verified certificate chains.
const maxTrusted = 1024

// trustedChain is a publisher certificate chain verified against the trust
// bundle; it stays trusted for events signed within [notBefore, notAfter].
type trustedChain struct {
	id        spiffeid.ID
	service   string
	pub       crypto.PublicKey
	notBefore time.Time
	notAfter  time.Time
}

// chainVerifier verifies publishers' certificate chains against the
// subscriber's trust bundle and caches the outcome per chain, so that each
// event costs one signature check. The cache is dropped whenever the
// identity source rotates, so that a new bundle applies at once.
type chainVerifier struct {
	src security.Source

	mu      sync.Mutex
	forSelf *security.Identity
	trusted map[[sha256.Size]byte]*trustedChain
}

func newChainVerifier(src security.Source) *chainVerifier {
	return &chainVerifier{src: src, trusted: make(map[[sha256.Size]byte]*trustedChain)}
}

// chain returns the verified publisher of a certificate chain. Whether
// the chain was valid when an event was signed is for the caller to check
// against the returned validity window.
func (v *chainVerifier) chain(der [][]byte) (*trustedChain, *RefusalError) {
	self := v.src.Current()
	h := sha256.New()
	var n [4]byte
	for _, c := range der {
		binary.BigEndian.PutUint32(n[:], uint32(len(c)))
		h.Write(n[:])
		h.Write(c)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])

	v.mu.Lock()
	if v.forSelf != self {
		v.forSelf, v.trusted = self, make(map[[sha256.Size]byte]*trustedChain)
	}
	tc := v.trusted[key]
	v.mu.Unlock()
	if tc != nil {
		return tc, nil
	}

	tc, r := verifyChain(der, self)
	if r != nil {
		return nil, r
	}
	v.mu.Lock()
	if v.forSelf == self {
		if len(v.trusted) >= maxTrusted {
			clear(v.trusted)
		}
		v.trusted[key] = tc
	}
	v.mu.Unlock()
	return tc, nil
}

// verifyChain checks a publisher's chain as moat's TLS layer checks a
// client: a leaf that is not a CA, with the clientAuth (or any) usage, a
// strong key and exactly one SPIFFE ID naming a service of the
// subscriber's trust domain, chaining to the subscriber's bundle. The
// chain is verified at a time when all its certificates were valid; the
// returned window says when that is.
func verifyChain(der [][]byte, self *security.Identity) (*trustedChain, *RefusalError) {
	certs := make([]*x509.Certificate, len(der))
	for i, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, &RefusalError{Reason: ReasonUntrustedPublisher,
				Detail: fmt.Sprintf("certificate %d does not parse", i), Err: err}
		}
		certs[i] = c
	}
	leaf := certs[0]
	if leaf.IsCA {
		return nil, refuse(ReasonUntrustedPublisher, "publisher certificate is a CA")
	}
	if !hasClientUsage(leaf) {
		return nil, refuse(ReasonUntrustedPublisher,
			"publisher certificate lacks the clientAuth extended key usage")
	}
	if err := checkKey(leaf.PublicKey); err != nil {
		return nil, refuse(ReasonUntrustedPublisher, "publisher certificate: %v", err)
	}
	id, err := spiffeIDOf(leaf)
	if err != nil {
		return nil, refuse(ReasonUntrustedPublisher, "publisher certificate: %v", err)
	}
	if id.TrustDomain() != self.TrustDomain() {
		return nil, refuse(ReasonUntrustedPublisher,
			"publisher %q belongs to trust domain %q, want %q",
			id, id.TrustDomain().Name(), self.TrustDomain().Name())
	}
	service, err := security.ServiceOf(id)
	if err != nil {
		return nil, &RefusalError{Reason: ReasonUntrustedPublisher,
			Detail: fmt.Sprintf("publisher %q names no service", id), Err: err}
	}

	notBefore, notAfter := leaf.NotBefore, leaf.NotAfter
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
		notBefore, notAfter = later(notBefore, c.NotBefore), earlier(notAfter, c.NotAfter)
	}
	if notAfter.Before(notBefore) {
		return nil, refuse(ReasonUntrustedPublisher,
			"certificates of %q were never valid at the same time", id)
	}
	chains, verr := leaf.Verify(x509.VerifyOptions{
		Roots:         self.Bundle(),
		Intermediates: inter,
		CurrentTime:   notBefore,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if verr != nil {
		return nil, &RefusalError{Reason: ReasonUntrustedPublisher,
			Detail: fmt.Sprintf("certificate of %q does not chain to the trust bundle", id),
			Err:    verr}
	}

	// Events may be signed at any time inside every certificate's validity
	// window, the intersection of them all.
	tc := &trustedChain{id: id, service: service, pub: leaf.PublicKey,
		notBefore: notBefore, notAfter: notAfter}
	for _, c := range chains[0][1:] {
		tc.notBefore = later(tc.notBefore, c.NotBefore)
		tc.notAfter = earlier(tc.notAfter, c.NotAfter)
	}
	return tc, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func hasClientUsage(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too weak", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return fmt.Errorf("ECDSA curve %s is not allowed", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}

func spiffeIDOf(c *x509.Certificate) (spiffeid.ID, error) {
	var found []spiffeid.ID
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := spiffeid.FromURI(u)
		if err != nil {
			return spiffeid.ID{}, fmt.Errorf("URI SAN %q is not a SPIFFE ID: %w", u, err)
		}
		found = append(found, id)
	}
	if len(found) != 1 {
		return spiffeid.ID{}, fmt.Errorf("%d SPIFFE IDs, want exactly one", len(found))
	}
	return found[0], nil
}

// checker applies a subscription's checks to received envelopes.
type checker struct {
	chains *chainVerifier // nil: accept unsigned events (memory broker only)
	now    func() time.Time
	skew   time.Duration
	maxAge time.Duration
	allow  map[string]bool // nil: any service of the trust domain
	replay *replayCache
}

// delivery describes how an envelope reached a subscription.
type delivery struct {
	// seq is the stream sequence of a JetStream delivery, 0 otherwise.
	seq uint64
	// count is 1 for a first delivery, more for redeliveries.
	count int
}

// check returns the event's verified metadata, or why it is refused.
func (c *checker) check(subject string, e *envelope, d delivery) (Event, *RefusalError) {
	ev := Event{
		Topic:    subject,
		ID:       e.idHex(),
		Time:     time.Unix(0, e.time),
		Header:   maps.Clone(e.header),
		Delivery: max(d.count, 1),
	}
	if c.chains == nil {
		return ev, nil
	}
	if !e.signed() {
		return ev, refuse(ReasonUnsigned, "event carries no publisher signature")
	}
	tc, r := c.chains.chain(e.chain)
	if r != nil {
		return ev, r
	}
	if tc.id.String() != e.publisher {
		return ev, refuse(ReasonWrongPublisher,
			"event claims publisher %q but is signed by %q", e.publisher, tc.id)
	}
	digest := e.digest(subject)
	if !verifySignature(tc.pub, digest[:], e.signature) {
		return ev, refuse(ReasonBadSignature, "signature of %q does not verify", tc.id)
	}
	ev.Publisher = tc.id

	now := c.now()
	if age := now.Sub(ev.Time); age > c.maxAge {
		return ev, refuse(ReasonExpired, "event signed %v ago, max age %v",
			age.Round(time.Millisecond), c.maxAge)
	}
	if ahead := ev.Time.Sub(now); ahead > c.skew {
		return ev, refuse(ReasonFutureTimestamp, "event signed %v in the future, max skew %v",
			ahead.Round(time.Millisecond), c.skew)
	}
	if ev.Time.Before(tc.notBefore) || ev.Time.After(tc.notAfter) {
		return ev, refuse(ReasonUntrustedPublisher,
			"certificate of %q was not valid when the event was signed (%s; valid %s to %s)",
			tc.id, ev.Time.UTC().Format(time.RFC3339), tc.notBefore.UTC().Format(time.RFC3339),
			tc.notAfter.UTC().Format(time.RFC3339))
	}
	if c.allow != nil && !c.allow[tc.service] {
		return ev, refuse(ReasonPublisherNotAllowed,
			"publisher %q is not allowed on this subscription", tc.id)
	}
	return ev, c.replay.check(e.id, e.time, d, now.Add(-c.maxAge).UnixNano())
}
