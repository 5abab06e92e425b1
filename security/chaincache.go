package security

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// chainCacheSize bounds the chains a verifier remembers; past it the cache
// starts over.
const chainCacheSize = 1024

// chainCache remembers the peer chains a verifier found to chain to its
// trust bundle, so that a peer presenting the same chain again, on a new
// connection or a resumed session, is not verified twice. An entry holds
// only for the identity (so the bundle) it was verified with, which a
// rotation replaces, and only while now is inside the validity window of
// every certificate of the chain. Everything else (validity of the leaf,
// SPIFFE ID, trust domain, EKU, revocation, authorization) is checked on
// every handshake. It is safe for concurrent use.
type chainCache struct {
	mu      sync.Mutex
	self    *Identity
	entries map[[sha256.Size]byte][2]time.Time
}

// verify checks that leaf chains to self's bundle through intermediates at
// now, from the cache when it can.
func (c *chainCache) verify(
	self *Identity,
	leaf *x509.Certificate,
	intermediates []*x509.Certificate,
	now time.Time,
) *Error {
	key := chainKey(leaf, intermediates)
	c.mu.Lock()
	if c.self != self {
		c.self, c.entries = self, nil
	}
	window, ok := c.entries[key]
	c.mu.Unlock()
	if ok && !now.Before(window[0]) && !now.After(window[1]) {
		return nil
	}
	window, err := verifyChain(leaf, intermediates, self.pool, now, "peer")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.self != self {
		return nil
	}
	if c.entries == nil || len(c.entries) >= chainCacheSize {
		c.entries = make(map[[sha256.Size]byte][2]time.Time)
	}
	c.entries[key] = window
	return nil
}

// chainKey digests the DER of every certificate of a chain, each with its
// length, so that no two chains share a key.
func chainKey(leaf *x509.Certificate, intermediates []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for _, c := range append([]*x509.Certificate{leaf}, intermediates...) {
		binary.BigEndian.PutUint32(n[:], uint32(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}
