package security

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
)

// HandshakeEvent describes one TLS handshake of moat's gRPC credentials,
// for audit hooks and metrics.
type HandshakeEvent struct {
	// Side is "server" or "client": the side that reports.
	Side string
	// Remote is the peer's network address.
	Remote net.Addr
	// Peer is the SPIFFE ID the peer presented, when one was readable.
	Peer string
	// Resumed reports a resumed TLS session.
	Resumed bool
	// Reason is empty for an accepted peer, else why it was refused.
	Reason Reason
	// Err is the refusal, nil for an accepted peer.
	Err error
}

// HandshakeHook receives handshake events. It must be safe for concurrent
// use and must not block.
type HandshakeHook func(HandshakeEvent)

// ServerCredentials returns gRPC transport credentials for a server
// presenting src, built on [ServerTLSConfig]. hook, when not nil, sees
// every handshake with its outcome and, for refusals, a distinct reason.
func ServerCredentials(src Source, hook HandshakeHook, opts ...TLSOption) (credentials.TransportCredentials, error) {
	conf, err := ServerTLSConfig(src, opts...)
	if err != nil {
		return nil, err
	}
	cfg := &tlsConfig{}
	for _, o := range opts {
		o.applyTLS(cfg)
	}
	return &auditedCreds{TransportCredentials: credentials.NewTLS(conf), side: "server", hook: hook,
		tracker: cfg.tracker}, nil
}

// ClientCredentials returns gRPC transport credentials for calling
// service, built on [ClientTLSConfig]: a connection succeeds only with a
// server that proves it is service.
func ClientCredentials(src Source, service string, hook HandshakeHook, opts ...TLSOption) (credentials.TransportCredentials, error) {
	conf, err := ClientTLSConfig(src, service, opts...)
	if err != nil {
		return nil, err
	}
	return &auditedCreds{TransportCredentials: credentials.NewTLS(conf), side: "client", hook: hook}, nil
}

type auditedCreds struct {
	credentials.TransportCredentials
	side    string
	hook    HandshakeHook
	tracker *ConnTracker
}

func (c *auditedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	c.report(raw.RemoteAddr(), info, err)
	if err == nil && c.tracker != nil {
		if tlsInfo, ok := info.(credentials.TLSInfo); ok {
			conn = c.tracker.track(conn, tlsInfo.State.PeerCertificates)
		}
	}
	return conn, info, err
}

func (c *auditedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	c.report(raw.RemoteAddr(), info, err)
	return conn, info, err
}

func (c *auditedCreds) Clone() credentials.TransportCredentials {
	return &auditedCreds{TransportCredentials: c.TransportCredentials.Clone(), side: c.side,
		hook: c.hook, tracker: c.tracker}
}

func (c *auditedCreds) report(remote net.Addr, info credentials.AuthInfo, err error) {
	if c.hook == nil {
		return
	}
	ev := HandshakeEvent{Side: c.side, Remote: remote, Err: err}
	if tlsInfo, ok := info.(credentials.TLSInfo); ok {
		ev.Resumed = tlsInfo.State.DidResume
		if id, err := PeerFromState(tlsInfo.State); err == nil {
			ev.Peer = id.String()
		}
	}
	if err != nil {
		ev.Reason = Classify(err)
		var se *Error
		if errors.As(err, &se) {
			ev.Peer = se.Peer
		}
	}
	c.hook(ev)
}

// Classify returns the reason a handshake error stands for: the [Reason]
// of an [*Error], [ReasonNotTLS] when the peer did not speak TLS, else
// [ReasonHandshake].
func Classify(err error) Reason {
	if err == nil {
		return ""
	}
	if r := ReasonOf(err); r != "" {
		return r
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return ReasonNotTLS
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	return ReasonHandshake
}

// PeerFromAuthInfo returns the verified SPIFFE ID of the peer of a gRPC
// connection secured by moat's credentials.
func PeerFromAuthInfo(info credentials.AuthInfo) (spiffeid.ID, error) {
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !ok {
		return spiffeid.ID{}, refuse(ReasonNoCertificate, "peer", "connection is not secured by TLS")
	}
	return PeerFromState(tlsInfo.State)
}
