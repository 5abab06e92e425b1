package security_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/moatrpc/moat/security"
)

// tlsServer accepts TLS connections on loopback, answers one byte per
// connection, and records the handshake results it sees.
func tlsServer(t *testing.T, conf *tls.Config) (addr string, results chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results = make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
				err := tc.Handshake()
				results <- err
				if err == nil {
					b := make([]byte, 1)
					if _, err := io.ReadFull(tc, b); err == nil {
						_, _ = tc.Write(b)
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), results
}

// roundTrip dials, exchanges one byte (so that session tickets arrive) and
// returns the connection state.
func roundTrip(addr string, conf *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

func TestMutualTLSAcceptsTheRightPeer(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	server, _ := ca.Identity("profile")
	client, _ := ca.Identity("caller")

	sconf, err := security.ServerTLSConfig(server)
	if err != nil {
		t.Fatal(err)
	}
	addr, results := tlsServer(t, sconf)
	cconf, err := security.ClientTLSConfig(client, "profile")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := roundTrip(addr, cconf)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-results; err != nil {
		t.Fatalf("server refused: %v", err)
	}
	if cs.Version != tls.VersionTLS13 {
		t.Fatalf("version %x", cs.Version)
	}
	id, err := security.PeerFromState(cs)
	if err != nil || id.String() != "spiffe://moat.test/svc/profile" {
		t.Fatalf("server identity %v %v", id, err)
	}
}

func TestClientRefusesAnotherServiceIdentity(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	impostor, _ := ca.Identity("auth")
	client, _ := ca.Identity("caller")
	sconf, _ := security.ServerTLSConfig(impostor)
	addr, _ := tlsServer(t, sconf)

	cconf, _ := security.ClientTLSConfig(client, "profile")
	_, err := roundTrip(addr, cconf)
	if !errors.Is(err, security.ErrWrongIdentity) {
		t.Fatalf("err = %v, want wrong identity", err)
	}
}

func TestServerRefusesOtherTrustDomainAndAuthorizer(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	server, _ := ca.Identity("profile")
	stranger, _ := ca.Identity("stranger")
	denied := errors.New("not on the list")
	sconf, _ := security.ServerTLSConfig(server, security.WithAuthorizer(func(id spiffeid.ID) error {
		if id.String() == "spiffe://moat.test/svc/stranger" {
			return denied
		}
		return nil
	}))
	addr, results := tlsServer(t, sconf)
	cconf, _ := security.ClientTLSConfig(stranger, "profile")
	_, _ = roundTrip(addr, cconf)
	if err := <-results; !errors.Is(err, security.ErrUnauthorized) || !errors.Is(err, denied) {
		t.Fatalf("server err = %v, want unauthorized wrapping the authorizer's error", err)
	}
}

// Resumed sessions skip the certificate exchange; moat's checks must still
// run, against the state of the moment.
func TestChecksRunOnResumedSessions(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	server, _ := ca.Identity("profile", security.WithLifetime(time.Hour))
	client, _ := ca.Identity("caller")

	sconf, _ := security.ServerTLSConfig(server)
	addr, _ := tlsServer(t, sconf)

	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	cache := tls.NewLRUClientSessionCache(4)
	cconf, _ := security.ClientTLSConfig(client, "profile",
		security.WithSessionCache(cache), security.WithTLSClock(clock))

	first, err := roundTrip(addr, cconf)
	if err != nil || first.DidResume {
		t.Fatalf("first handshake: resumed=%v err=%v", first.DidResume, err)
	}
	second, err := roundTrip(addr, cconf)
	if err != nil || !second.DidResume {
		t.Fatalf("second handshake: resumed=%v err=%v; want a resumed session", second.DidResume, err)
	}
	// Two hours on, the server's certificate has expired: resuming the
	// session must not bypass that.
	skew.Store(int64(2 * time.Hour))
	_, err = roundTrip(addr, cconf)
	if !errors.Is(err, security.ErrExpired) {
		t.Fatalf("resumed handshake with an expired server certificate: err = %v, want expired", err)
	}
}

func TestTLSConfigNeedsIdentity(t *testing.T) {
	t.Parallel()
	if _, err := security.ServerTLSConfig(nil); err == nil {
		t.Fatal("server config without identity")
	}
	if _, err := security.ClientTLSConfig(nil, "x"); err == nil {
		t.Fatal("client config without identity")
	}
}
