package security

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SPIFFESource is a [Source] fed by go-spiffe sources, typically a
// workloadapi.X509Source connected to a SPIRE agent's Workload API, so that
// moat runs under SPIRE without certificate files:
//
//	x509src, err := workloadapi.NewX509Source(ctx)
//	src, err := security.NewSPIFFESource(x509src, x509src)
//	svc, err := rpc.NewService("auth", rpc.WithIdentity(src))
//
// Every SVID and bundle it receives passes the checks of [NewIdentity]; an
// update that fails them is ignored with an [EventRotationFailed] event and
// the last good identity stays. It is safe for concurrent use.
type SPIFFESource struct {
	svids   x509svid.Source
	bundles x509bundle.Source
	audit   AuditHook

	mu        sync.Mutex
	cur       *Identity
	lastLeaf  []byte
	lastRoots []byte
}

// NewSPIFFESource builds a source from an SVID source and a bundle source;
// the first SVID must pass the checks.
func NewSPIFFESource(svids x509svid.Source, bundles x509bundle.Source, audit AuditHook) (*SPIFFESource, error) {
	s := &SPIFFESource{svids: svids, bundles: bundles, audit: audit}
	if err := s.refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the identity built from the newest good SVID.
func (s *SPIFFESource) Current() *Identity {
	_ = s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *SPIFFESource) refresh() error {
	svid, err := s.svids.GetX509SVID()
	if err != nil {
		return s.fail(fmt.Errorf("security: SPIFFE source: %w", err))
	}
	bundle, err := s.bundles.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return s.fail(fmt.Errorf("security: SPIFFE source: %w", err))
	}
	var roots bytes.Buffer
	for _, r := range bundle.X509Authorities() {
		roots.Write(r.Raw)
	}
	s.mu.Lock()
	unchanged := s.cur != nil && bytes.Equal(s.lastLeaf, svid.Certificates[0].Raw) &&
		bytes.Equal(s.lastRoots, roots.Bytes())
	// Material is judged once: a bad update is not retried on every
	// handshake, only when the Workload API sends something new.
	s.lastLeaf, s.lastRoots = svid.Certificates[0].Raw, roots.Bytes()
	s.mu.Unlock()
	if unchanged {
		return nil
	}

	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return s.fail(fmt.Errorf("security: SPIFFE source: encode SVID: %w", err))
	}
	bundlePEM, err := bundle.Marshal()
	if err != nil {
		return s.fail(fmt.Errorf("security: SPIFFE source: encode bundle: %w", err))
	}
	id, err := NewIdentity(certPEM, keyPEM, bundlePEM, WithTrustDomain(svid.ID.TrustDomain().Name()))
	if err != nil {
		return s.fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.cur.Service() != id.Service() {
		return s.failLocked(refuse(ReasonWrongIdentity, "SPIFFE source",
			"new SVID is %q but this workload is %q", id.ID(), s.cur.ID()))
	}
	s.cur = id
	s.audit.emit(Event{Kind: EventRotated, Peer: id.ID().String(), Subject: "SPIFFE source",
		NotAfter: id.Leaf().NotAfter})
	return nil
}

func (s *SPIFFESource) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failLocked(err)
}

func (s *SPIFFESource) failLocked(err error) error {
	if s.cur != nil {
		s.audit.emit(Event{Kind: EventRotationFailed, Reason: reasonOr(err, ReasonMalformed),
			Subject: "SPIFFE source", Err: err})
	}
	return err
}
