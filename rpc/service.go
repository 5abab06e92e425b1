package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/moatrpc/moat/broker"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

// Service is a named moat service: a server for its own handlers, a client
// for the services it calls, and its registration. Methods are safe for
// concurrent use.
type Service struct {
	name    string
	opts    options
	logger  *slog.Logger
	server  *Server
	client  *Client
	metrics *metrics
	owned   []func() error
	sealer  *fields.Sealer
	calls   *fields.CallLogger
	pubsub  pubsub
	// ownsBroker is set for a broker made from the environment.
	ownsBroker bool

	mu          sync.Mutex
	stopMetrics func(context.Context) error
	metricsAddr net.Addr
	sweepStop   chan struct{}
	sweepDone   chan struct{}
	state       state
	lis         net.Listener
	node        *registry.Service
	served      chan error
	stopped     chan struct{}
}

type state int

const (
	stateNew state = iota
	stateRunning
	stateStopped
)

var (
	defaultRegistryOnce sync.Once
	defaultRegistry     registry.Registry
)

// DefaultRegistry returns the in-memory registry services use when none is
// given: services of one process find each other through it.
func DefaultRegistry() registry.Registry {
	defaultRegistryOnce.Do(func() { defaultRegistry = registry.NewMemory() })
	return defaultRegistry
}

// NewService builds a service named name. It fails when no workload
// identity is given, when the identity names another service, or when any
// option is invalid; the error says what is missing and how to get it.
func NewService(name string, opts ...Option) (*Service, error) {
	o := options{
		version:      "latest",
		address:      "127.0.0.1:0",
		grace:        10 * time.Second,
		handleSignal: true,
		sweepEvery:   5 * time.Second,
		pollInterval: time.Second,
	}
	o.name = name
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{name: name, logger: o.logger.With("service", name)}
	s.metrics = newMetrics(name)
	userAudit := o.audit
	o.audit = s.auditHook(userAudit)
	s.opts = o
	if err := s.init(); err != nil {
		s.closeOwned()
		return nil, err
	}
	return s, nil
}

func (s *Service) init() error {
	o := &s.opts
	name := s.name
	if err := security.ValidateServiceName(name); err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	if o.envErr != nil {
		return fmt.Errorf("rpc: service %q: environment: %w", name, o.envErr)
	}
	if o.policyErr != nil {
		return fmt.Errorf("rpc: service %q: %w", name, o.policyErr)
	}
	if _, _, err := net.SplitHostPort(o.address); err != nil {
		return fmt.Errorf("rpc: address %q is not host:port: %w", o.address, err)
	}
	if o.advertise != "" {
		if _, _, err := net.SplitHostPort(o.advertise); err != nil {
			return fmt.Errorf("rpc: advertise address %q is not host:port: %w", o.advertise, err)
		}
	}
	if o.grace < 0 || o.sweepEvery <= 0 || o.pollInterval <= 0 || o.ttl < 0 {
		return fmt.Errorf("rpc: grace period, TTL, sweep and poll intervals must be positive")
	}
	if o.trustDomain != "" {
		if _, err := security.ServiceID(o.trustDomain, name); err != nil {
			return fmt.Errorf("rpc: %w", err)
		}
	}
	if o.identityFiles != nil {
		var load []security.LoadOption
		if o.trustDomain != "" {
			load = append(load, security.WithTrustDomain(o.trustDomain))
		}
		src, err := security.WatchIdentity(*o.identityFiles,
			security.WithAuditHook(o.audit),
			security.WithLoadOptions(load...),
			security.WithPollInterval(o.pollInterval))
		if err != nil {
			return fmt.Errorf("rpc: service %q: %w", name, err)
		}
		o.identity = src
		s.owned = append(s.owned, src.Close)
	}
	if o.identity == nil || o.identity.Current() == nil {
		return fmt.Errorf("%w: service %q has no workload identity: pass rpc.WithIdentityFiles"+
			"(cert, key, bundle) or rpc.WithIdentity; for development create them with "+
			"'moat certs init' and 'moat certs issue %s'", ErrNoIdentity, name, name)
	}
	if td := o.identity.Current().TrustDomain().Name(); o.trustDomain != "" && td != o.trustDomain {
		return fmt.Errorf("%w: service %q has an identity of trust domain %q, but %q is required",
			ErrIdentityMismatch, name, td, o.trustDomain)
	}
	if got := o.identity.Current().Service(); got != name {
		return fmt.Errorf("%w: service %q was given the identity of %q (%s); issue one "+
			"for it with 'moat certs issue %s'", ErrIdentityMismatch, name, got,
			o.identity.Current().ID(), name)
	}
	if o.registry == nil && o.consulAddr != "" {
		reg, err := registry.NewConsul(
			registry.WithConsulAddress(o.consulAddr),
			registry.WithConsulIdentity(o.identity),
			registry.WithConsulToken(o.consulToken),
			registry.WithConsulLogger(o.logger),
		)
		if err != nil {
			return fmt.Errorf("rpc: service %q: %w", name, err)
		}
		o.registry = reg
		s.owned = append(s.owned, reg.Close)
	}
	if o.registry == nil {
		o.registry = DefaultRegistry()
	}
	if o.broker == nil && o.natsURL != "" {
		b, err := broker.NewNATS(broker.WithIdentity(o.identity), broker.WithURL(o.natsURL),
			broker.WithName(name), broker.WithLogger(o.logger))
		if err != nil {
			return fmt.Errorf("rpc: service %q: %w", name, err)
		}
		o.broker, s.ownsBroker = b, true
	}
	if o.crlFile != "" {
		crl := security.NewCRLFile(o.crlFile, o.identity, security.WithCRLAuditHook(o.audit))
		if o.revocation != nil {
			o.revocation = security.Revocations{o.revocation, crl}
		} else {
			o.revocation = crl
		}
	}
	s.metrics.watchIdentity(o.identity)
	if err := s.initFields(); err != nil {
		return err
	}

	server, err := newServer(s)
	if err != nil {
		return err
	}
	s.server = server
	s.client = newClient(s)
	return nil
}

// closeOwned closes what the service created for itself: the identity
// watch and a registry made from the environment.
func (s *Service) closeOwned() error {
	var errs []error
	for i := len(s.owned) - 1; i >= 0; i-- {
		if err := s.owned[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.owned = nil
	return errors.Join(errs...)
}

// Name returns the service's name.
func (s *Service) Name() string { return s.name }

// Server returns the service's gRPC server, on which generated services
// register before Start or Run.
func (s *Service) Server() *Server { return s.server }

// Client returns the service's client for calling other services.
func (s *Service) Client() *Client { return s.client }

// Identity returns the service's current workload identity.
func (s *Service) Identity() *security.Identity { return s.opts.identity.Current() }

// Addr returns the address the server listens on, once started.
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis == nil {
		return nil
	}
	return s.lis.Addr()
}

// Start listens, starts serving and registers the service. It returns once
// the service is registered; Stop undoes it.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return ErrAlreadyStarted
	}
	if s.sealer == nil {
		for _, d := range s.server.descs {
			if m := secretMethods(d); len(m) > 0 {
				return fmt.Errorf("%w: service %q serves %s, whose messages carry SECRET fields, "+
					"but has no keyset to seal them: pass rpc.WithKeysetDir (create keysets with "+
					"'moat keys init') or rpc.WithKeyring", ErrNoKeyset, s.name, m[0])
			}
		}
	}
	lis, err := net.Listen("tcp", s.opts.address)
	if err != nil {
		return fmt.Errorf("rpc: listen on %s: %w", s.opts.address, err)
	}
	s.lis = lis
	s.served = make(chan error, 1)
	s.stopped = make(chan struct{})
	go func() { s.served <- s.server.grpc.Serve(lis) }()

	node, err := s.registration(lis.Addr())
	if err != nil {
		s.server.grpc.Stop()
		return err
	}
	var regOpts []registry.RegisterOption
	if s.opts.ttl > 0 {
		regOpts = append(regOpts, registry.WithTTL(s.opts.ttl))
	}
	if err := s.startBroker(ctx); err != nil {
		s.server.grpc.Stop()
		_ = s.stopBroker(context.WithoutCancel(ctx))
		return err
	}
	if err := s.opts.registry.Register(ctx, node, regOpts...); err != nil {
		s.server.grpc.Stop()
		_ = s.stopBroker(context.WithoutCancel(ctx))
		return fmt.Errorf("rpc: register %q in %s: %w", s.name, s.opts.registry, err)
	}
	s.node = node
	if s.opts.metricsAddr != "" {
		stop, bound, err := s.serveMetrics(s.opts.metricsAddr)
		if err != nil {
			_ = s.opts.registry.Deregister(ctx, node)
			s.server.grpc.Stop()
			return err
		}
		s.stopMetrics, s.metricsAddr = stop, bound
	}
	s.sweepStop = make(chan struct{})
	s.sweepDone = make(chan struct{})
	go s.sweep()
	s.state = stateRunning
	s.logger.Info("rpc: service started", "addr", lis.Addr().String(),
		"node", node.Nodes[0].ID, "identity", s.Identity().ID().String())
	return nil
}

func (s *Service) registration(addr net.Addr) (*registry.Service, error) {
	advertise := s.opts.advertise
	if advertise == "" {
		host, port, _ := net.SplitHostPort(addr.String())
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return nil, fmt.Errorf("rpc: listening on %s, an unspecified address: set "+
				"rpc.WithAdvertise to the address other services should dial", addr)
		}
		advertise = net.JoinHostPort(host, port)
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	md := map[string]string{
		registry.MetaProtocol:  "grpc",
		registry.MetaIdentity:  s.Identity().ID().String(),
		registry.MetaServer:    "moat",
		registry.MetaRegistry:  s.opts.registry.String(),
		registry.MetaTransport: "grpc",
	}
	if s.opts.broker != nil {
		md[registry.MetaBroker] = s.opts.broker.String()
	}
	for k, v := range s.opts.metadata {
		md[k] = v
	}
	return &registry.Service{
		Name:      s.name,
		Version:   s.opts.version,
		Endpoints: s.server.endpoints(),
		Nodes: []*registry.Node{{
			ID:       s.name + "-" + hex.EncodeToString(suffix[:]),
			Address:  advertise,
			Metadata: md,
		}},
	}, nil
}

// Stop deregisters the service, lets calls in flight finish within the
// grace period, then closes every connection, server and client. It is
// safe to call more than once.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateStopped {
		return nil
	}
	wasRunning := s.state == stateRunning
	s.state = stateStopped

	var errs []error
	if wasRunning {
		if err := s.opts.registry.Deregister(ctx, s.node); err != nil {
			errs = append(errs, fmt.Errorf("rpc: deregister %q: %w", s.name, err))
		}
		if s.sweepStop != nil {
			close(s.sweepStop)
			<-s.sweepDone
		}
		if err := s.stopBroker(ctx); err != nil {
			errs = append(errs, err)
		}
		if s.stopMetrics != nil {
			if err := s.stopMetrics(ctx); err != nil {
				errs = append(errs, fmt.Errorf("rpc: metrics server: %w", err))
			}
		}
		graceful := make(chan struct{})
		go func() {
			s.server.grpc.GracefulStop()
			close(graceful)
		}()
		timer := time.NewTimer(s.opts.grace)
		select {
		case <-graceful:
		case <-timer.C:
			s.logger.Warn("rpc: grace period over, closing open calls", "grace", s.opts.grace)
			s.server.grpc.Stop()
			<-graceful
		case <-ctx.Done():
			s.server.grpc.Stop()
			<-graceful
		}
		timer.Stop()
		if err := <-s.served; err != nil && !errors.Is(err, net.ErrClosed) &&
			!errors.Is(err, grpc.ErrServerStopped) {
			errs = append(errs, fmt.Errorf("rpc: serve: %w", err))
		}
		close(s.stopped)
	} else {
		s.server.grpc.Stop()
	}
	if err := s.client.close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.closeOwned(); err != nil {
		errs = append(errs, fmt.Errorf("rpc: close: %w", err))
	}
	s.logger.Info("rpc: service stopped")
	return errors.Join(errs...)
}

// Run starts the service, serves until ctx ends or the process receives
// SIGINT or SIGTERM, then stops it gracefully and deregisters.
func (s *Service) Run(ctx context.Context) error {
	if s.opts.handleSignal {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-s.served:
		s.served <- serveErr
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), s.opts.grace+5*time.Second)
	defer cancel()
	err := s.Stop(stopCtx)
	if serveErr != nil {
		return fmt.Errorf("rpc: serve: %w", serveErr)
	}
	return err
}

// MetricsAddr returns the address of the metrics endpoint, once started
// with [WithMetricsAddress].
func (s *Service) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metricsAddr
}

// sweepCheck refuses peers whose certificate has expired since their
// handshake, and revoked peers when revocation is configured.
func (s *Service) sweepCheck() security.Revocation {
	checks := security.Revocations{security.ExpiryCheck{}}
	if s.opts.revocation != nil {
		checks = append(checks, s.opts.revocation)
	}
	return checks
}

// sweep closes live connections of peers whose certificate expired or was
// revoked after the handshake, until Stop.
func (s *Service) sweep() {
	defer close(s.sweepDone)
	t := time.NewTicker(s.opts.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.sweepStop:
			return
		case <-t.C:
			s.server.tracker.Sweep(s.sweepCheck(), s.opts.audit)
		}
	}
}
