package security

import (
	"crypto/x509"
	"net"
	"sync"
)

// ConnTracker remembers the live server connections of moat credentials
// with their peers' certificate chains, so that connections of a peer
// revoked after its handshake can be closed ([ConnTracker.Sweep]). It is
// safe for concurrent use.
type ConnTracker struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

// NewConnTracker returns an empty tracker.
func NewConnTracker() *ConnTracker {
	return &ConnTracker{conns: map[*trackedConn]struct{}{}}
}

type trackedConn struct {
	net.Conn
	t     *ConnTracker
	chain []*x509.Certificate
	once  sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

func (t *ConnTracker) track(conn net.Conn, chain []*x509.Certificate) net.Conn {
	tc := &trackedConn{Conn: conn, t: t, chain: chain}
	t.mu.Lock()
	t.conns[tc] = struct{}{}
	t.mu.Unlock()
	return tc
}

// Len returns the number of live tracked connections.
func (t *ConnTracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Sweep closes every connection whose peer chain rev refuses, emitting an
// [EventRevoked] event for each, and returns how many it closed.
func (t *ConnTracker) Sweep(rev Revocation, audit AuditHook) int {
	t.mu.Lock()
	var doomed []*trackedConn
	var errs []error
	for c := range t.conns {
		if err := rev.Check(c.chain); err != nil {
			doomed = append(doomed, c)
			errs = append(errs, err)
		}
	}
	t.mu.Unlock()
	for i, c := range doomed {
		peer := ""
		if id, err := idFromCert(c.chain[0], "peer"); err == nil {
			peer = id.String()
		}
		audit.emit(Event{Kind: EventRevoked, Reason: reasonOr(errs[i], ReasonRevoked), Peer: peer,
			Remote: c.RemoteAddr().String(), Subject: c.chain[0].SerialNumber.Text(16), Err: errs[i]})
		_ = c.Close()
	}
	return len(doomed)
}
