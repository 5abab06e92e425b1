package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authorizer decides whether a peer whose certificate has already been
// verified may complete the handshake. It returns nil to accept.
type Authorizer func(peer spiffeid.ID) error

// TLSOption changes a configuration built by [ServerTLSConfig] or
// [ClientTLSConfig].
type TLSOption interface{ applyTLS(*tlsConfig) }

type tlsConfig struct {
	authorize    Authorizer
	now          func() time.Time
	sessionCache tls.ClientSessionCache
	noResumption bool
	revocation   Revocation
	tracker      *ConnTracker
}

type tlsFunc func(*tlsConfig)

func (f tlsFunc) applyTLS(c *tlsConfig) { f(c) }

// WithAuthorizer sets the server's check of a caller's identity, run after
// the certificate is verified. The default accepts any workload of the
// server's own trust domain.
func WithAuthorizer(a Authorizer) TLSOption {
	return tlsFunc(func(c *tlsConfig) { c.authorize = a })
}

// WithTLSClock sets the time used to check peer validity; for tests.
func WithTLSClock(now func() time.Time) TLSOption {
	return tlsFunc(func(c *tlsConfig) { c.now = now })
}

// WithSessionCache sets the client's TLS session cache. Resumed sessions
// skip the certificate exchange, but the peer's identity is still checked
// on every resumption against the current trust bundle.
func WithSessionCache(cache tls.ClientSessionCache) TLSOption {
	return tlsFunc(func(c *tlsConfig) { c.sessionCache = cache })
}

// WithRevocation refuses peers whose chain rev refuses, on full and
// resumed handshakes.
func WithRevocation(rev Revocation) TLSOption {
	return tlsFunc(func(c *tlsConfig) { c.revocation = rev })
}

// WithConnTracker makes [ServerCredentials] record each accepted
// connection in t, so that connections of peers revoked later can be
// closed with [ConnTracker.Sweep].
func WithConnTracker(t *ConnTracker) TLSOption {
	return tlsFunc(func(c *tlsConfig) { c.tracker = t })
}

// WithoutResumption turns TLS session resumption off: every handshake is
// a full one.
func WithoutResumption() TLSOption {
	return tlsFunc(func(c *tlsConfig) { c.noResumption = true })
}

// ServerTLSConfig returns a TLS 1.3 server configuration that presents
// src's current certificate, requires a client certificate, and accepts a
// caller only when its certificate chains to the current trust bundle,
// carries the clientAuth usage and a SPIFFE ID of the server's trust domain,
// and passes the [Authorizer].
func ServerTLSConfig(src Source, opts ...TLSOption) (*tls.Config, error) {
	cfg, err := newTLSConfig(src, opts)
	if err != nil {
		return nil, err
	}
	v := &verifier{src: src, cfg: cfg, side: "server", eku: x509.ExtKeyUsageClientAuth}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.Current().TLSCertificate(), nil
		},
		// The chain is verified in VerifyConnection against the bundle of
		// the moment, so that rotated bundles apply without a new config.
		// Asked for, then required in VerifyConnection, so that a missing
		// certificate is refused with moat's own reason.
		ClientAuth:             tls.RequestClientCert,
		VerifyConnection:       v.verify,
		SessionTicketsDisabled: cfg.noResumption,
		NextProtos:             []string{"h2"},
	}
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) {
			return nil, refuse(ReasonTLSVersion, "peer",
				"client offered TLS versions %s; moat requires TLS 1.3", versionNames(hello.SupportedVersions))
		}
		return nil, nil
	}
	return conf, nil
}

func versionNames(vs []uint16) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = tls.VersionName(v)
	}
	return strings.Join(names, ", ")
}

// ClientTLSConfig returns a TLS 1.3 client configuration that presents
// src's current certificate and accepts the server only when its
// certificate chains to the current trust bundle, carries the serverAuth
// usage, and names exactly the SPIFFE ID of service in the client's trust
// domain. The address dialled plays no part: a server reached through any
// address must prove it is service.
func ClientTLSConfig(src Source, service string, opts ...TLSOption) (*tls.Config, error) {
	cfg, err := newTLSConfig(src, opts)
	if err != nil {
		return nil, err
	}
	want, err := ServiceID(src.Current().TrustDomain().Name(), service)
	if err != nil {
		return nil, err
	}
	v := &verifier{src: src, cfg: cfg, side: "client", eku: x509.ExtKeyUsageServerAuth, want: want}
	cache := cfg.sessionCache
	if cache == nil && !cfg.noResumption {
		cache = tls.NewLRUClientSessionCache(0)
	}
	if cfg.noResumption {
		cache = nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		ServerName: service,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Current().TLSCertificate(), nil
		},
		// crypto/tls would check the server's DNS name against ServerName
		// with fixed roots; moat checks the SPIFFE ID against the current
		// bundle instead, in VerifyConnection, which runs on full and
		// resumed handshakes alike. Verification is replaced, not skipped.
		InsecureSkipVerify: true,
		VerifyConnection:   v.verify,
		ClientSessionCache: cache,
		NextProtos:         []string{"h2"},
	}, nil
}

func newTLSConfig(src Source, opts []TLSOption) (*tlsConfig, error) {
	if src == nil || src.Current() == nil {
		return nil, errors.New("security: no workload identity: load one with " +
			"security.LoadIdentity, or create dev certificates with 'moat certs init' " +
			"and 'moat certs issue <service>'")
	}
	cfg := &tlsConfig{now: time.Now}
	for _, o := range opts {
		o.applyTLS(cfg)
	}
	return cfg, nil
}

type verifier struct {
	chains chainCache
	src    Source
	cfg    *tlsConfig
	side   string
	eku    x509.ExtKeyUsage
	want   spiffeid.ID
}

func (v *verifier) verify(cs tls.ConnectionState) error {
	peer, err := v.check(cs)
	if err != nil {
		if !peer.IsZero() {
			err.Peer = peer.String()
		}
		return err
	}
	return nil
}

func (v *verifier) check(cs tls.ConnectionState) (spiffeid.ID, *Error) {
	if cs.Version != tls.VersionTLS13 {
		return spiffeid.ID{}, refuse(ReasonTLSVersion, "peer",
			"TLS version %s refused, moat requires TLS 1.3", tls.VersionName(cs.Version))
	}
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, refuse(ReasonNoCertificate, "peer",
			"peer presented no certificate; moat requires mutual TLS with a workload certificate")
	}
	self := v.src.Current()
	leaf := cs.PeerCertificates[0]
	now := v.cfg.now()
	id, verr := checkLeafFields(leaf, self.TrustDomain(), now, "peer")
	if verr == nil {
		verr = v.chains.verify(self, leaf, cs.PeerCertificates[1:], now)
	}
	if verr != nil {
		// Report the identity the peer claimed when one is readable.
		claimed, _ := idFromCert(leaf, "peer")
		return claimed, verr
	}
	if err := checkEKU(leaf, "peer", v.eku); err != nil {
		return id, err
	}
	if v.cfg.revocation != nil {
		if err := v.cfg.revocation.Check(cs.PeerCertificates); err != nil {
			var se *Error
			if !errors.As(err, &se) {
				se = &Error{Reason: ReasonRevocationUnavailable, Subject: "peer", Err: err,
					Detail: "revocation check failed"}
			}
			return id, se
		}
	}
	if v.side == "client" && id != v.want {
		return id, refuse(ReasonWrongIdentity, "peer",
			"server presented %q, but this connection is for %q", id, v.want)
	}
	if v.side == "server" && v.cfg.authorize != nil {
		if err := v.cfg.authorize(id); err != nil {
			return id, &Error{Reason: ReasonUnauthorized, Subject: "peer", Err: err,
				Detail: fmt.Sprintf("caller %q is not authorized", id)}
		}
	}
	return id, nil
}

type peerKey struct{}

// ContextWithPeer returns a context carrying the verified identity of the
// caller. Servers built by moat do this for every call.
func ContextWithPeer(ctx context.Context, id spiffeid.ID) context.Context {
	return context.WithValue(ctx, peerKey{}, id)
}

// PeerFromContext returns the verified SPIFFE ID of the caller of the
// current request, and false outside a moat server handler.
func PeerFromContext(ctx context.Context) (spiffeid.ID, bool) {
	id, ok := ctx.Value(peerKey{}).(spiffeid.ID)
	return id, ok && !id.IsZero()
}

// PeerFromState returns the SPIFFE ID in the leaf certificate of a verified
// connection state.
func PeerFromState(cs tls.ConnectionState) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, refuse(ReasonNoCertificate, "peer", "no peer certificate")
	}
	id, err := idFromCert(cs.PeerCertificates[0], "peer")
	if err != nil {
		return spiffeid.ID{}, err
	}
	return id, nil
}
