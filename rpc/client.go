package rpc

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

// roundRobin spreads calls over every healthy node of a service.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// Client opens connections from a service to the services it calls. It
// keeps one gRPC connection per target service, shared by all callers; it
// is safe for concurrent use.
type Client struct {
	svc *Service

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newClient(s *Service) *Client {
	return &Client{svc: s, conns: map[string]*grpc.ClientConn{}}
}

// Conn returns the connection to service, resolved through the registry
// and balanced round-robin across its healthy nodes. Its TLS accepts only
// a server presenting service's SPIFFE ID in the caller's trust domain.
// The connection is created on first use and closed when the calling
// service stops; callers must not close it.
func (c *Client) Conn(service string) (grpc.ClientConnInterface, error) {
	return c.conn(service)
}

func (c *Client) conn(service string) (*grpc.ClientConn, error) {
	if err := security.ValidateServiceName(service); err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrStopped
	}
	if cc, ok := c.conns[service]; ok {
		return cc, nil
	}
	cc, err := Dial(c.svc.opts.registry, c.svc.opts.identity, service,
		c.svc.dialOptions(service)...)
	if err != nil {
		return nil, err
	}
	c.conns[service] = cc
	return cc, nil
}

func (s *Service) dialOptions(target string) []grpc.DialOption {
	unary, stream := s.fieldClientInterceptors()
	opts := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(unary...),
		grpc.WithChainStreamInterceptor(stream...),
		withHandshakeHook(s.handshakeHook("client")),
		keyringOption{handled: true},
	}
	return append(opts, s.opts.dialOpts...)
}

func (c *Client) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for name, cc := range c.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("rpc: close connection to %q: %w", name, err))
		}
		delete(c.conns, name)
	}
	return errors.Join(errs...)
}

// hookOption carries a handshake hook through Dial's options.
type hookOption struct {
	grpc.EmptyDialOption
	hook security.HandshakeHook
}

func withHandshakeHook(h security.HandshakeHook) grpc.DialOption { return hookOption{hook: h} }

// keyringOption carries field encryption settings through Dial's options.
type keyringOption struct {
	grpc.EmptyDialOption
	ring    *fields.Keyring
	opts    []fields.SealerOption
	handled bool // set by a Service, whose own interceptors seal
}

// WithDialKeyring makes a connection opened by [Dial] seal the SECRET
// fields of requests and unseal responses with ring. Without it, Dial
// refuses to send a request that carries SECRET fields.
func WithDialKeyring(ring *fields.Keyring, opts ...fields.SealerOption) grpc.DialOption {
	return keyringOption{ring: ring, opts: opts}
}

// Dial opens a connection to service outside a [Service]: for command-line
// tools and programs that only call. src is the caller's workload identity;
// reg resolves service's nodes. The caller closes the connection.
func Dial(reg registry.Registry, src security.Source, service string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if reg == nil {
		return nil, errors.New("rpc: Dial needs a registry to resolve " + service)
	}
	var hook security.HandshakeHook
	var keys *keyringOption
	var rest []grpc.DialOption
	for _, o := range opts {
		switch o := o.(type) {
		case hookOption:
			hook = o.hook
		case keyringOption:
			keys = &o
		default:
			rest = append(rest, o)
		}
	}
	switch {
	case keys == nil:
		rest = append(rest, grpc.WithChainUnaryInterceptor(refuseClearSecrets))
	case keys.handled:
	default:
		sealer, err := fields.NewSealer(keys.ring, keys.opts...)
		if err != nil {
			return nil, fmt.Errorf("rpc: dial %q: %w", service, err)
		}
		// Added last, the sealer runs next to the wire.
		rest = append(rest, grpc.WithChainUnaryInterceptor(sealer.UnaryClientInterceptor()),
			grpc.WithChainStreamInterceptor(sealer.StreamClientInterceptor()))
	}
	creds, err := security.ClientCredentials(src, service, hook)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %q: %w", service, err)
	}
	all := append([]grpc.DialOption{
		grpc.WithResolvers(registry.NewResolver(reg)),
		grpc.WithDefaultServiceConfig(roundRobin),
	}, rest...)
	// moat's credentials come last so that no earlier option replaces them.
	all = append(all, grpc.WithTransportCredentials(creds))
	cc, err := grpc.NewClient(registry.Target(service), all...)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %q: %w", service, err)
	}
	return cc, nil
}
