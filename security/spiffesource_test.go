package security_test

import (
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/moatrpc/moat/security"
)

// fakeWorkloadAPI stands for a SPIRE agent: it hands out whatever SVID it
// was last given.
type fakeWorkloadAPI struct {
	mu     sync.Mutex
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (f *fakeWorkloadAPI) GetX509SVID() (*x509svid.SVID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.svid, nil
}

func (f *fakeWorkloadAPI) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bundle, nil
}

func (f *fakeWorkloadAPI) set(t *testing.T, is *security.Issued, ca *security.CA) {
	t.Helper()
	svid, err := x509svid.Parse(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svid = svid
	f.bundle = x509bundle.FromX509Authorities(ca.TrustDomain(), []*x509.Certificate{ca.Certificate()})
}

func TestSPIFFESourceFollowsSVIDs(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	api := &fakeWorkloadAPI{}
	first, _ := ca.Issue("auth")
	api.set(t, first, ca)
	ev := &events{}
	src, err := security.NewSPIFFESource(api, api, ev.hook)
	if err != nil {
		t.Fatal(err)
	}
	if src.Current().ID().String() != "spiffe://moat.test/svc/auth" {
		t.Fatalf("identity %s", src.Current().ID())
	}

	second, _ := ca.Issue("auth")
	api.set(t, second, ca)
	if src.Current().Leaf().SerialNumber.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatal("new SVID not taken")
	}

	expired, _ := ca.Issue("auth", security.WithValidity(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
	api.set(t, expired, ca)
	if src.Current().Leaf().SerialNumber.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatal("expired SVID replaced the good one")
	}
	if ev.last().Kind != security.EventRotationFailed || ev.last().Reason != security.ReasonExpired {
		t.Fatalf("event %+v", ev.last())
	}
	// The bad SVID is judged once, not on every handshake.
	failures := 0
	for range 5 {
		_ = src.Current()
	}
	ev.mu.Lock()
	for _, e := range ev.all {
		if e.Kind == security.EventRotationFailed {
			failures++
		}
	}
	ev.mu.Unlock()
	if failures != 1 {
		t.Fatalf("%d rotation failures reported for one bad SVID", failures)
	}
}
