package rpc

import (
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/moatrpc/moat/broker"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

// Option configures a [Service].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	name          string
	envErr        error
	version       string
	address       string
	advertise     string
	metadata      map[string]string
	registry      registry.Registry
	ttl           time.Duration
	identity      security.Source
	identityFiles *security.IdentityFiles
	consulAddr    string
	consulToken   string
	policy        *security.Policy
	policyErr     error
	revocation    security.Revocation
	sweepEvery    time.Duration
	audit         security.AuditHook
	metricsAddr   string
	pollInterval  time.Duration
	keyring       *fields.Keyring
	keysetDir     string
	sealerOpts    []fields.SealerOption
	callLog       bool
	callLogOpts   []fields.LogOption
	broker        broker.Broker
	natsURL       string
	crlFile       string
	trustDomain   string
	logger        *slog.Logger
	authorizer    security.Authorizer
	onHandshake   func(security.HandshakeEvent)
	grace         time.Duration
	handleSignal  bool
	noReflection  bool
	unary         []grpc.UnaryServerInterceptor
	stream        []grpc.StreamServerInterceptor
	clientUnary   []grpc.UnaryClientInterceptor
	clientStream  []grpc.StreamClientInterceptor
	serverOpts    []grpc.ServerOption
	dialOpts      []grpc.DialOption
}

// WithVersion sets the version the service registers; default "latest".
func WithVersion(v string) Option {
	return optionFunc(func(o *options) { o.version = v })
}

// WithAddress sets the host:port the server listens on; the default
// "127.0.0.1:0" picks a free loopback port.
func WithAddress(addr string) Option {
	return optionFunc(func(o *options) { o.address = addr })
}

// WithAdvertise sets the host:port registered for the node when it differs
// from the listening address (behind NAT, or when listening on 0.0.0.0).
func WithAdvertise(addr string) Option {
	return optionFunc(func(o *options) { o.advertise = addr })
}

// WithMetadata adds node metadata to the registration.
func WithMetadata(md map[string]string) Option {
	return optionFunc(func(o *options) {
		if o.metadata == nil {
			o.metadata = map[string]string{}
		}
		for k, v := range md {
			o.metadata[k] = v
		}
	})
}

// WithRegistry sets the registry the service registers in and resolves
// other services through. The default is a registry shared by the process
// ([DefaultRegistry]), which only finds services of the same process.
func WithRegistry(r registry.Registry) Option {
	return optionFunc(func(o *options) { o.registry = r })
}

// WithRegisterTTL sets the registration's health-check TTL.
func WithRegisterTTL(ttl time.Duration) Option {
	return optionFunc(func(o *options) { o.ttl = ttl })
}

// WithIdentity sets the workload identity: the certificate the service
// presents as server and as client, and the trust bundle it verifies peers
// against. REQUIRED, here or with [WithIdentityFiles].
func WithIdentity(src security.Source) Option {
	return optionFunc(func(o *options) { o.identity = src })
}

// WithIdentityFiles loads the workload identity from PEM files with
// [security.WatchIdentity]: the files are checked every second and new
// material is used for new handshakes at once, without a restart; bad
// material is refused with an audit event and the last good identity stays.
// REQUIRED, here or with [WithIdentity].
func WithIdentityFiles(certFile, keyFile, bundleFile string) Option {
	return optionFunc(func(o *options) {
		o.identity = nil
		o.identityFiles = &security.IdentityFiles{Cert: certFile, Key: keyFile, Bundle: bundleFile}
	})
}

// WithPolicy sets the per-method authorization of callers. The default
// lets any workload of the trust domain call any method.
func WithPolicy(p *security.Policy) Option {
	return optionFunc(func(o *options) { o.policy = p })
}

// WithPolicyFile loads the authorization policy from a JSON file (see
// [security.LoadPolicy]).
func WithPolicyFile(path string) Option {
	return optionFunc(func(o *options) { o.policy, o.policyErr = security.LoadPolicy(path) })
}

// WithRevocation refuses peers whose certificates rev reports revoked, at
// every handshake, and closes live connections of such peers within the
// sweep interval (default 5s, see [WithRevocationSweep]). A revocation
// source that cannot answer fails closed.
func WithRevocation(rev security.Revocation) Option {
	return optionFunc(func(o *options) { o.revocation = rev })
}

// WithRevocationSweep sets how often live connections are checked: those
// of peers whose certificate expired or was revoked since their handshake
// are closed. Default 5s.
func WithRevocationSweep(d time.Duration) Option {
	return optionFunc(func(o *options) { o.sweepEvery = d })
}

// WithAuditHook receives every audit event of the service: refused
// handshakes, authorization denials, rotations, revocations, certificates
// close to expiry. Events are also logged at warning or info level.
func WithAuditHook(h security.AuditHook) Option {
	return optionFunc(func(o *options) { o.audit = h })
}

// WithMetricsAddress serves the service's Prometheus metrics on
// https://<addr>/metrics, to scrapers presenting a workload certificate of
// the trust domain (mutual TLS, like everything else).
func WithMetricsAddress(addr string) Option {
	return optionFunc(func(o *options) { o.metricsAddr = addr })
}

// WithIdentityPollInterval sets how often identity files given with
// [WithIdentityFiles] are checked for changes; default 1s.
func WithIdentityPollInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.pollInterval = d })
}

// WithTrustDomain requires identities loaded by [WithIdentityFiles] after
// it to belong to this trust domain.
func WithTrustDomain(td string) Option {
	return optionFunc(func(o *options) { o.trustDomain = td })
}

// WithLogger sets the logger for lifecycle events and refused handshakes.
// The default discards everything: the library never prints on its own.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithAuthorizer sets the server's check of callers' identities during the
// handshake. The default accepts any workload of the service's trust
// domain.
func WithAuthorizer(a security.Authorizer) Option {
	return optionFunc(func(o *options) { o.authorizer = a })
}

// WithHandshakeHook calls fn after every peer verification of the service,
// as server and as client; for audit and metrics. fn must not block.
func WithHandshakeHook(fn func(security.HandshakeEvent)) Option {
	return optionFunc(func(o *options) { o.onHandshake = fn })
}

// WithGracePeriod sets how long Stop lets calls in flight finish before
// closing connections; default 10s.
func WithGracePeriod(d time.Duration) Option {
	return optionFunc(func(o *options) { o.grace = d })
}

// WithoutSignalHandling makes Run stop only when its context ends, not on
// SIGINT or SIGTERM.
func WithoutSignalHandling() Option {
	return optionFunc(func(o *options) { o.handleSignal = false })
}

// WithUnaryInterceptor adds server interceptors, run after moat's own in
// the order given.
func WithUnaryInterceptor(i ...grpc.UnaryServerInterceptor) Option {
	return optionFunc(func(o *options) { o.unary = append(o.unary, i...) })
}

// WithStreamInterceptor adds server stream interceptors, run after moat's
// own in the order given.
func WithStreamInterceptor(i ...grpc.StreamServerInterceptor) Option {
	return optionFunc(func(o *options) { o.stream = append(o.stream, i...) })
}

// WithClientUnaryInterceptor adds interceptors to every client connection.
func WithClientUnaryInterceptor(i ...grpc.UnaryClientInterceptor) Option {
	return optionFunc(func(o *options) { o.clientUnary = append(o.clientUnary, i...) })
}

// WithClientStreamInterceptor adds stream interceptors to every client
// connection.
func WithClientStreamInterceptor(i ...grpc.StreamClientInterceptor) Option {
	return optionFunc(func(o *options) { o.clientStream = append(o.clientStream, i...) })
}

// WithServerOptions passes options to grpc.NewServer. moat's transport
// credentials are applied after them, so no option can replace mutual TLS.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return optionFunc(func(o *options) { o.serverOpts = append(o.serverOpts, opts...) })
}

// WithDialOptions passes options to grpc.NewClient for every client
// connection. moat's transport credentials are applied after them, so no
// option can replace mutual TLS.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return optionFunc(func(o *options) { o.dialOpts = append(o.dialOpts, opts...) })
}

// WithoutReflection turns off gRPC server reflection, which moat servers
// otherwise answer (to authenticated callers only) for tools such as
// 'moat call' and grpcurl.
func WithoutReflection() Option {
	return optionFunc(func(o *options) { o.noReflection = true })
}
