package security

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Revocation reasons.
const (
	ReasonRevoked               Reason = "revoked"
	ReasonRevocationUnavailable Reason = "revocation_unavailable"
)

// Sentinels for revocation refusals.
var (
	ErrRevoked               error = &sentinel{ReasonRevoked}
	ErrRevocationUnavailable error = &sentinel{ReasonRevocationUnavailable}
)

// Revocation decides whether a verified peer chain has been revoked. Check
// returns nil for a chain in good standing, an [*Error] with
// [ReasonRevoked] for a revoked one, and an [*Error] with
// [ReasonRevocationUnavailable] when it cannot tell: callers fail closed.
// Implementations must be safe for concurrent use.
type Revocation interface {
	Check(chain []*x509.Certificate) error
}

// CRLFile is a [Revocation] backed by a PEM certificate revocation list
// file, such as the one 'moat certs revoke' maintains. The list is
// reloaded when the file changes; its signature must verify against a root
// of the trust bundle, and a list past its NextUpdate, unreadable or
// badly signed makes every check fail closed, unless [WithStaleCRLAllowed].
// It is safe for concurrent use.
type CRLFile struct {
	path       string
	roots      func() []*x509.Certificate
	allowStale bool
	audit      AuditHook
	now        func() time.Time

	mu      sync.Mutex
	modTime time.Time
	size    int64
	revoked map[string]bool // serial (decimal) -> revoked
	next    time.Time
	err     error
}

// CRLOption configures [NewCRLFile].
type CRLOption func(*CRLFile)

// WithStaleCRLAllowed keeps using a list past its NextUpdate instead of
// failing closed. UNSAFE: a revoked peer stays accepted while no fresh
// list arrives.
func WithStaleCRLAllowed() CRLOption { return func(c *CRLFile) { c.allowStale = true } }

// WithCRLAuditHook receives list loads and failures.
func WithCRLAuditHook(h AuditHook) CRLOption { return func(c *CRLFile) { c.audit = h } }

// WithCRLClock sets the time used for freshness; for tests.
func WithCRLClock(now func() time.Time) CRLOption { return func(c *CRLFile) { c.now = now } }

// NewCRLFile returns a revocation check reading path; issuers are checked
// against src's current trust bundle. A missing file is not an error here:
// checks fail closed until it appears.
func NewCRLFile(path string, src Source, opts ...CRLOption) *CRLFile {
	return newCRLFile(path, func() []*x509.Certificate { return src.Current().roots }, opts)
}

// NewCRLFileWithRoots is [NewCRLFile] for a fixed set of issuers, for
// tools that have a CA but no workload identity.
func NewCRLFileWithRoots(path string, roots []*x509.Certificate, opts ...CRLOption) *CRLFile {
	return newCRLFile(path, func() []*x509.Certificate { return roots }, opts)
}

func newCRLFile(path string, roots func() []*x509.Certificate, opts []CRLOption) *CRLFile {
	c := &CRLFile{path: path, roots: roots, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Check implements [Revocation].
func (c *CRLFile) Check(chain []*x509.Certificate) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshLocked()
	if c.err != nil {
		return &Error{Reason: ReasonRevocationUnavailable, Subject: c.path, Err: c.err,
			Detail: "revocation list unusable, refusing peers until it is fixed"}
	}
	if !c.allowStale && c.now().After(c.next) {
		return refuse(ReasonRevocationUnavailable, c.path,
			"revocation list expired at %s; publish a fresh one with 'moat certs revoke --refresh'",
			c.next.UTC().Format(time.RFC3339))
	}
	for _, cert := range chain {
		if c.revoked[cert.SerialNumber.String()] {
			return refuse(ReasonRevoked, "peer", "certificate serial %x is revoked", cert.SerialNumber)
		}
	}
	return nil
}

func (c *CRLFile) refreshLocked() {
	info, err := os.Stat(c.path)
	if err != nil {
		if c.err == nil || c.revoked != nil {
			c.audit.emit(Event{Kind: EventRevocationFailed, Reason: ReasonRevocationUnavailable,
				Subject: c.path, Err: err})
		}
		c.err, c.revoked = fmt.Errorf("read %s: %w", c.path, err), nil
		return
	}
	if info.ModTime().Equal(c.modTime) && info.Size() == c.size && c.revoked != nil {
		return
	}
	c.modTime, c.size = info.ModTime(), info.Size()
	revoked, next, err := c.parse()
	if err != nil {
		c.err, c.revoked = err, nil
		c.audit.emit(Event{Kind: EventRevocationFailed, Reason: ReasonRevocationUnavailable,
			Subject: c.path, Err: err})
		return
	}
	c.err, c.revoked, c.next = nil, revoked, next
	c.audit.emit(Event{Kind: EventRevocationLoaded, Subject: c.path})
}

func (c *CRLFile) parse() (map[string]bool, time.Time, error) {
	data, err := os.ReadFile(c.path)
	if err != nil {
		return nil, time.Time{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return nil, time.Time{}, errors.New("no PEM X509 CRL block")
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("parse revocation list: %w", err)
	}
	var sigErr error = errors.New("signed by no root of the trust bundle")
	for _, root := range c.roots() {
		if err := crl.CheckSignatureFrom(root); err == nil {
			sigErr = nil
			break
		}
	}
	if sigErr != nil {
		return nil, time.Time{}, sigErr
	}
	revoked := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		revoked[e.SerialNumber.String()] = true
	}
	return revoked, crl.NextUpdate, nil
}

// Denylist is a [Revocation] refusing certificates by serial number, for
// emergencies before a new list is published. It is safe for concurrent
// use.
type Denylist struct {
	mu      sync.RWMutex
	serials map[string]bool
}

// NewDenylist returns a denylist of the given serial numbers.
func NewDenylist(serials ...*big.Int) *Denylist {
	d := &Denylist{serials: map[string]bool{}}
	for _, s := range serials {
		d.Add(s)
	}
	return d
}

// Add denies serial from now on.
func (d *Denylist) Add(serial *big.Int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.serials[serial.String()] = true
}

// Check implements [Revocation].
func (d *Denylist) Check(chain []*x509.Certificate) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, c := range chain {
		if d.serials[c.SerialNumber.String()] {
			return refuse(ReasonRevoked, "peer", "certificate serial %x is on the denylist", c.SerialNumber)
		}
	}
	return nil
}

// Revocations combines checks: a chain is refused when any refuses it.
type Revocations []Revocation

// Check implements [Revocation].
func (rs Revocations) Check(chain []*x509.Certificate) error {
	for _, r := range rs {
		if err := r.Check(chain); err != nil {
			return err
		}
	}
	return nil
}

// CRLFileName is the revocation list [CA.Revoke] maintains in a CA folder.
const CRLFileName = "crl.pem"

// DefaultCRLLifetime is how long a list written by [CA.Revoke] stays fresh.
const DefaultCRLLifetime = 24 * time.Hour

// Revoke adds serials to the revocation list in dir (creating it when
// missing), signs it with the CA, sets its next update lifetime from now,
// and writes it atomically. With no serials it only refreshes the list.
func (ca *CA) Revoke(dir string, lifetime time.Duration, serials ...*big.Int) (string, error) {
	path := filepath.Join(dir, CRLFileName)
	var entries []x509.RevocationListEntry
	number := big.NewInt(1)
	if data, err := os.ReadFile(path); err == nil {
		if block, _ := pem.Decode(data); block != nil {
			old, err := x509.ParseRevocationList(block.Bytes)
			if err != nil {
				return "", fmt.Errorf("security: existing %s: %w", path, err)
			}
			if err := old.CheckSignatureFrom(ca.cert); err != nil {
				return "", fmt.Errorf("security: existing %s is not signed by this CA: %w", path, err)
			}
			entries = old.RevokedCertificateEntries
			number.Add(old.Number, big.NewInt(1))
		}
	}
	now := time.Now()
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(lifetime),
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		return "", fmt.Errorf("security: sign revocation list: %w", err)
	}
	if err := writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// ExpiryCheck is a [Revocation] that refuses chains whose certificates are
// past their validity: used on live connections, whose peers were valid at
// their handshake.
type ExpiryCheck struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Check implements [Revocation].
func (e ExpiryCheck) Check(chain []*x509.Certificate) error {
	now := time.Now()
	if e.Now != nil {
		now = e.Now()
	}
	for _, c := range chain {
		if now.After(c.NotAfter) {
			return refuse(ReasonExpired, "peer", "certificate serial %x expired at %s",
				c.SerialNumber, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
