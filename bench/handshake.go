package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatrpc/moat/security"
)

// Implementations compared by the handshake measurements.
const (
	// ImplBare is crypto/tls with standard verification: the server's
	// certificate against its hostname, the client's against the CA.
	ImplBare = "crypto/tls"
	// ImplMoat is crypto/tls with the configurations of
	// security.ServerTLSConfig and security.ClientTLSConfig.
	ImplMoat = "moat"
)

// Key exchanges of the handshake measurements.
const (
	KXX25519 = "X25519"
	// KXHybrid is Go's default hybrid post-quantum key exchange, which
	// moat keeps on.
	KXHybrid = "X25519MLKEM768"
)

// Handshake modes.
const (
	ModeFull    = "full"
	ModeResumed = "resumed"
)

// handshakeSpec is one handshake case.
type handshakeSpec struct {
	impl string
	key  security.KeyType
	kx   string
	mode string
}

func (s handshakeSpec) params() map[string]string {
	return map[string]string{"key": string(s.key), "kx": s.kx, "mode": s.mode}
}

// handshakeSpecs lists full handshakes for every key type and key
// exchange, then resumed ones with the first key type and the default key
// exchange, each for moat and bare crypto/tls.
func handshakeSpecs(cfg Config) []handshakeSpec {
	var out []handshakeSpec
	for _, key := range cfg.KeyTypes {
		for _, kx := range []string{KXX25519, KXHybrid} {
			for _, impl := range []string{ImplBare, ImplMoat} {
				out = append(out, handshakeSpec{impl: impl, key: key, kx: kx, mode: ModeFull})
			}
		}
	}
	for _, impl := range []string{ImplBare, ImplMoat} {
		out = append(out, handshakeSpec{impl: impl, key: cfg.KeyTypes[0], kx: KXHybrid,
			mode: ModeResumed})
	}
	return out
}

func handshakeCases(cfg Config) ([]*caseRun, func(), error) {
	ids := &keyIdentities{byKey: map[security.KeyType][2]*security.Identity{}}
	var (
		cases []*caseRun
		hs    []*handshaker
	)
	cleanup := func() {
		for _, h := range hs {
			h.close()
		}
	}
	parallel := cfg.HandshakeParallel
	if parallel == 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	for _, spec := range handshakeSpecs(cfg) {
		h, err := newHandshaker(spec, ids)
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("bench: handshake %s %s: %w", spec.impl,
				paramString(spec.params()), err)
		}
		hs = append(hs, h)
		c := newCase(KindHandshake, spec.impl, spec.params(), func(ctx context.Context) (sample, error) {
			return h.measure(ctx, parallel, cfg.Warmup, cfg.Duration)
		})
		c.note = h.note
		cases = append(cases, c)
	}
	return cases, cleanup, nil
}

// keyIdentities issues, once per key type, the server and client
// identities of the handshake measurements, from one CA.
type keyIdentities struct {
	mu    sync.Mutex
	ca    *security.CA
	byKey map[security.KeyType][2]*security.Identity
}

func (k *keyIdentities) get(key security.KeyType) (server, client *security.Identity, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.byKey[key]; ok {
		return p[0], p[1], nil
	}
	if k.ca == nil {
		if k.ca, err = security.NewCA("bench.moat.local"); err != nil {
			return nil, nil, err
		}
	}
	if server, err = k.ca.Identity(serverService, security.WithKeyType(key)); err != nil {
		return nil, nil, err
	}
	if client, err = k.ca.Identity(clientService, security.WithKeyType(key)); err != nil {
		return nil, nil, err
	}
	k.byKey[key] = [2]*security.Identity{server, client}
	return server, client, nil
}

// handshaker runs TLS handshakes against a loopback listener of its own:
// each one dials, completes the handshake, reads one byte the server sends
// (which also delivers the session ticket) and closes.
type handshaker struct {
	spec   handshakeSpec
	ln     net.Listener
	server *tls.Config
	client *tls.Config
	wantKX tls.CurveID
	note   string

	serverErrs atomic.Int64
	serverErr  atomic.Value
	// resumedChecks counts moat verifications of resumed sessions, on
	// both sides.
	resumedChecks atomic.Int64
	wg            sync.WaitGroup
}

func newHandshaker(spec handshakeSpec, ids *keyIdentities) (*handshaker, error) {
	serverID, clientID, err := ids.get(spec.key)
	if err != nil {
		return nil, err
	}
	h := &handshaker{spec: spec, wantKX: tls.X25519MLKEM768}
	var cache tls.ClientSessionCache
	if spec.mode == ModeResumed {
		cache = tls.NewLRUClientSessionCache(64)
	}
	switch spec.impl {
	case ImplMoat:
		opts := []security.TLSOption{security.WithoutResumption()}
		if cache != nil {
			opts = []security.TLSOption{security.WithSessionCache(cache)}
		}
		if h.server, err = security.ServerTLSConfig(serverID); err != nil {
			return nil, err
		}
		if h.client, err = security.ClientTLSConfig(clientID, serverService, opts...); err != nil {
			return nil, err
		}
	case ImplBare:
		h.server = &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{*serverID.TLSCertificate()},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    serverID.Bundle(),
		}
		h.client = &tls.Config{
			MinVersion:         tls.VersionTLS13,
			Certificates:       []tls.Certificate{*clientID.TLSCertificate()},
			RootCAs:            clientID.Bundle(),
			ServerName:         "localhost",
			ClientSessionCache: cache,
		}
	default:
		return nil, fmt.Errorf("unknown implementation %q", spec.impl)
	}
	if spec.kx == KXX25519 {
		h.server.CurvePreferences = []tls.CurveID{tls.X25519}
		h.client.CurvePreferences = []tls.CurveID{tls.X25519}
		h.wantKX = tls.X25519
	}
	if spec.impl == ImplMoat && spec.mode == ModeResumed {
		h.server.VerifyConnection = h.countResumed(h.server.VerifyConnection)
		h.client.VerifyConnection = h.countResumed(h.client.VerifyConnection)
	}
	if h.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	h.wg.Add(1)
	go h.accept()

	// A first handshake checks the configuration and, for resumption,
	// fills the session cache.
	if _, err := h.once(); err != nil {
		h.close()
		return nil, err
	}
	if spec.impl == ImplMoat && spec.mode == ModeResumed {
		if err := h.checkResumedRevocation(clientID, serverID, cache); err != nil {
			h.close()
			return nil, err
		}
	}
	return h, nil
}

// countResumed wraps moat's VerifyConnection to count the resumed
// sessions it checked; the check itself is unchanged.
func (h *handshaker) countResumed(
	verify func(tls.ConnectionState) error,
) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if cs.DidResume {
			h.resumedChecks.Add(1)
		}
		return verify(cs)
	}
}

// checkResumedRevocation shows that moat's identity checks run on resumed
// sessions: a client holding a valid session ticket, but for which the
// server's certificate is now revoked, must be refused.
func (h *handshaker) checkResumedRevocation(
	clientID, serverID *security.Identity,
	cache tls.ClientSessionCache,
) error {
	deny := security.NewDenylist(serverID.Leaf().SerialNumber)
	conf, err := security.ClientTLSConfig(clientID, serverService,
		security.WithSessionCache(cache), security.WithRevocation(deny))
	if err != nil {
		return err
	}
	var resumed atomic.Bool
	verify := conf.VerifyConnection
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		resumed.Store(cs.DidResume)
		return verify(cs)
	}
	_, err = h.handshakeWith(conf)
	switch {
	case err == nil:
		return errors.New("a resumed session with a revoked server certificate was accepted")
	case security.ReasonOf(err) != security.ReasonRevoked:
		return fmt.Errorf("a resumed session with a revoked server was refused "+
			"for another reason: %w", err)
	case !resumed.Load():
		return errors.New("the revocation check ran, but not on a resumed session")
	}
	// The server sees the client's refusal as an error of its own; wait
	// for it, so that it is not counted against the measurements.
	for deadline := time.Now().Add(callTimeout); h.serverErrs.Load() == 0; {
		if time.Now().After(deadline) {
			return errors.New("the server did not see the refused resumption")
		}
		time.Sleep(time.Millisecond)
	}
	h.serverErrs.Store(0)
	h.note = "resumed handshakes report DidResume and pass moat's VerifyConnection on both sides; " +
		"a resumed session whose server certificate was revoked since is refused (" +
		string(security.ReasonRevoked) + ")"
	return nil
}

func (h *handshaker) accept() {
	defer h.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.serve(c)
		}()
	}
}

func (h *handshaker) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(callTimeout))
	tc := tls.Server(c, h.server)
	if err := tc.Handshake(); err != nil {
		h.serverErrs.Add(1)
		h.serverErr.Store(err)
		return
	}
	if _, err := tc.Write([]byte{1}); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, tc)
}

// once runs one handshake with the client configuration and checks what
// it negotiated.
func (h *handshaker) once() (tls.ConnectionState, error) {
	cs, err := h.handshakeWith(h.client)
	if err != nil {
		return cs, err
	}
	switch {
	case cs.Version != tls.VersionTLS13:
		return cs, fmt.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(cs.Version))
	case cs.CurveID != h.wantKX:
		return cs, fmt.Errorf("key exchange %s, want %s", cs.CurveID, h.wantKX)
	case h.spec.mode == ModeFull && cs.DidResume:
		return cs, errors.New("a full handshake resumed a session")
	}
	return cs, nil
}

func (h *handshaker) handshakeWith(conf *tls.Config) (tls.ConnectionState, error) {
	c, err := net.DialTimeout("tcp", h.ln.Addr().String(), callTimeout)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(callTimeout))
	tc := tls.Client(c, conf)
	if err := tc.Handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		return tls.ConnectionState{}, fmt.Errorf("read after handshake: %w", err)
	}
	cs := tc.ConnectionState()
	_ = tc.Close()
	return cs, nil
}

// measure keeps parallel handshakes going for d after a warm-up.
func (h *handshaker) measure(
	ctx context.Context,
	parallel int,
	warmup, d time.Duration,
) (sample, error) {
	if warmup > 0 {
		if _, err := h.drive(ctx, parallel, warmup); err != nil {
			return sample{}, err
		}
	}
	h.resumedChecks.Store(0)
	before := snapshot()
	res, err := h.drive(ctx, parallel, d)
	after := snapshot()
	if err != nil {
		return sample{}, err
	}
	if n := h.serverErrs.Load(); n > 0 {
		return sample{}, fmt.Errorf("%d server handshakes failed: %v", n, h.serverErr.Load())
	}
	if h.spec.mode == ModeResumed {
		if res.resumed != res.calls {
			return sample{}, fmt.Errorf("only %d of %d handshakes resumed", res.resumed, res.calls)
		}
		if h.spec.impl == ImplMoat && h.resumedChecks.Load() != int64(2*res.calls) {
			return sample{}, fmt.Errorf("moat verified %d resumed sessions, want %d (both sides of %d)",
				h.resumedChecks.Load(), 2*res.calls, res.calls)
		}
	}
	allocs, bytes, cpu := after.since(before).perOp(res.calls)
	rate := float64(res.calls) / res.elapsed.Seconds()
	return sample{
		values: []value{
			{"handshakes_per_s", "handshakes/s", rate},
			{"cpu_us_per_handshake", "µs", cpu},
			{"allocs_per_handshake", "allocs", allocs},
			{"bytes_per_handshake", "B", bytes},
		},
		summary: fmt.Sprintf("%.0f handshakes/s, %.0f µs CPU each", rate, cpu),
	}, nil
}

type handshakeRun struct {
	calls, resumed int
	elapsed        time.Duration
}

func (h *handshaker) drive(
	ctx context.Context,
	parallel int,
	d time.Duration,
) (handshakeRun, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      handshakeRun
		firstErr error
		stop     atomic.Bool
	)
	start := time.Now()
	deadline := start.Add(d)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			calls, resumed := 0, 0
			for !stop.Load() && ctx.Err() == nil && time.Now().Before(deadline) {
				cs, err := h.once()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					stop.Store(true)
					break
				}
				calls++
				if cs.DidResume {
					resumed++
				}
			}
			mu.Lock()
			res.calls += calls
			res.resumed += resumed
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if firstErr == nil && res.calls == 0 {
		firstErr = errors.New("no handshake finished")
	}
	return res, firstErr
}

func (h *handshaker) close() {
	_ = h.ln.Close()
	h.wg.Wait()
}
