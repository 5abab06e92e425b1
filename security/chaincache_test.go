package security_test

import (
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatrpc/moat/security"
)

// switchable is a Source whose identity a test replaces, as a rotation
// does.
type switchable struct {
	cur atomic.Pointer[security.Identity]
}

func (s *switchable) Current() *security.Identity { return s.cur.Load() }

// TestChainCacheKeepsEveryCheck verifies the same peer chain again and
// again, as new connections and resumed sessions do, and checks that a
// chain remembered as verified is still refused once revoked, expired, or
// no longer trusted after a rotation of the bundle.
func TestChainCacheKeepsEveryCheck(t *testing.T) {
	t.Parallel()
	ca, other := newTestCA(t), newTestCA(t)
	server, err := ca.Identity("server")
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := other.Identity("server")
	if err != nil {
		t.Fatal(err)
	}
	caller, err := ca.Identity("caller")
	if err != nil {
		t.Fatal(err)
	}
	src := &switchable{}
	src.cur.Store(server)
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	deny := security.NewDenylist()
	conf, err := security.ServerTLSConfig(src, security.WithRevocation(deny),
		security.WithTLSClock(func() time.Time { return *now.Load() }))
	if err != nil {
		t.Fatal(err)
	}
	cs := tls.ConnectionState{Version: tls.VersionTLS13,
		PeerCertificates: []*x509.Certificate{caller.Leaf()}}

	for range 3 {
		if err := conf.VerifyConnection(cs); err != nil {
			t.Fatalf("good peer refused: %v", err)
		}
	}
	deny.Add(caller.Leaf().SerialNumber)
	if got := security.ReasonOf(conf.VerifyConnection(cs)); got != security.ReasonRevoked {
		t.Errorf("revoked peer: reason %q, want %q", got, security.ReasonRevoked)
	}

	late := caller.Leaf().NotAfter.Add(time.Minute)
	now.Store(&late)
	if got := security.ReasonOf(conf.VerifyConnection(cs)); got != security.ReasonExpired {
		t.Errorf("expired peer: reason %q, want %q", got, security.ReasonExpired)
	}
	now.Store(&start)

	src.cur.Store(rotated)
	if got := security.ReasonOf(conf.VerifyConnection(cs)); got != security.ReasonUntrusted {
		t.Errorf("peer of a root no longer in the bundle: reason %q, want %q",
			got, security.ReasonUntrusted)
	}
}

func newTestCA(t *testing.T) *security.CA {
	t.Helper()
	ca, err := security.NewCA("moat.test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
