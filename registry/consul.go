package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/moatrpc/moat/security"
)

// Defaults of the Consul backend.
const (
	DefaultTTL = 15 * time.Second
	// minDeregisterAfter is the shortest deregister-critical-after Consul
	// honours; it removes critical nodes no sooner whatever is asked.
	minDeregisterAfter = time.Minute
)

// ConsulOption configures [NewConsul].
type ConsulOption func(*consulConfig)

type consulConfig struct {
	address    string
	src        security.Source
	token      string
	datacenter string
	ttl        time.Duration
	logger     *slog.Logger
}

// WithConsulAddress sets the host:port of the agent's HTTPS API. REQUIRED.
func WithConsulAddress(addr string) ConsulOption {
	return func(c *consulConfig) { c.address = addr }
}

// WithConsulIdentity sets the workload identity presented to the agent as
// a client certificate; the agent's certificate must chain to the
// identity's trust bundle. REQUIRED.
func WithConsulIdentity(src security.Source) ConsulOption {
	return func(c *consulConfig) { c.src = src }
}

// WithConsulToken sets the ACL token sent with every request. OPTIONAL.
func WithConsulToken(token string) ConsulOption {
	return func(c *consulConfig) { c.token = token }
}

// WithConsulDatacenter selects a datacenter other than the agent's. OPTIONAL.
func WithConsulDatacenter(dc string) ConsulOption {
	return func(c *consulConfig) { c.datacenter = dc }
}

// WithDefaultTTL sets the health-check TTL of registrations that do not
// set one; the default is [DefaultTTL]. OPTIONAL.
func WithDefaultTTL(ttl time.Duration) ConsulOption {
	return func(c *consulConfig) { c.ttl = ttl }
}

// WithConsulLogger sets the logger for heartbeat and watch problems; the
// default discards. OPTIONAL.
func WithConsulLogger(l *slog.Logger) ConsulOption {
	return func(c *consulConfig) { c.logger = l }
}

// Consul is the production registry, backed by a Consul agent reached over
// HTTPS with a client certificate. Each node is one Consul service
// registration with a TTL check that Consul keeps passing by heartbeats
// sent from this process; a node whose process dies turns critical after
// its TTL and leaves GetService results at once. Results of GetService are
// cached, and while the agent is unreachable the last known nodes are
// returned. Consul is safe for concurrent use; Close stops its heartbeats.
type Consul struct {
	client    *api.Client
	transport *http.Transport
	cfg       consulConfig

	mu         sync.Mutex
	heartbeats map[string]*heartbeat // node id -> heartbeat
	cache      map[string][]*Service
	closed     bool
	wg         sync.WaitGroup
}

type heartbeat struct {
	reg    *api.AgentServiceRegistration
	ttl    time.Duration
	cancel context.CancelFunc
}

// NewConsul connects to a Consul agent. It refuses to build without an
// address or a workload identity: moat talks to Consul only over mutual
// TLS.
func NewConsul(opts ...ConsulOption) (*Consul, error) {
	cfg := consulConfig{ttl: DefaultTTL}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.address == "" {
		return nil, errors.New("registry: no Consul address: pass registry.WithConsulAddress " +
			"(host:port of the agent's HTTPS API; 'moat dev' prints it as MOAT_CONSUL_ADDR)")
	}
	if cfg.src == nil || cfg.src.Current() == nil {
		return nil, errors.New("registry: no identity for Consul: pass registry.WithConsulIdentity " +
			"with a workload identity ('moat certs issue <service>' creates one); " +
			"moat reaches Consul only over mutual TLS")
	}
	if cfg.ttl <= 0 {
		return nil, fmt.Errorf("registry: TTL %v must be positive", cfg.ttl)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	host, _, err := net.SplitHostPort(cfg.address)
	if err != nil {
		return nil, fmt.Errorf("registry: Consul address %q is not host:port: %w", cfg.address, err)
	}

	src := cfg.src
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: host,
		RootCAs:    src.Current().Bundle(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Current().TLSCertificate(), nil
		},
	}
	transport := &http.Transport{
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	client, err := api.NewClient(&api.Config{
		Address:    cfg.address,
		Scheme:     "https",
		Datacenter: cfg.datacenter,
		Token:      cfg.token,
		HttpClient: &http.Client{Transport: transport},
	})
	if err != nil {
		return nil, fmt.Errorf("registry: Consul client: %w", err)
	}
	return &Consul{
		client:     client,
		transport:  transport,
		cfg:        cfg,
		heartbeats: map[string]*heartbeat{},
		cache:      map[string][]*Service{},
	}, nil
}

// String returns "consul".
func (c *Consul) String() string { return "consul" }

// API returns the underlying Consul API client, for operations moat does
// not wrap.
func (c *Consul) API() *api.Client { return c.client }

// Register registers every node of s with a TTL check and keeps it passing
// until Deregister or Close. When the agent forgets a registration (a
// restarted dev agent keeps nothing), the next heartbeat registers the node
// again.
func (c *Consul) Register(ctx context.Context, s *Service, opts ...RegisterOption) error {
	if err := validate(s); err != nil {
		return err
	}
	// Registry contents are not trusted for security decisions, but a
	// workload still may only announce itself.
	if own := c.cfg.src.Current().Service(); own != s.Name {
		return fmt.Errorf("%w: refusing to register %q with the identity of %q; each service "+
			"registers with its own workload certificate", ErrIdentityMismatch, s.Name, own)
	}
	o := RegisterOptions{TTL: c.cfg.ttl}
	for _, fn := range opts {
		fn(&o)
	}
	for _, n := range s.Nodes {
		reg, err := registration(s, n, o.TTL)
		if err != nil {
			return err
		}
		if err := c.register(ctx, reg); err != nil {
			return fmt.Errorf("registry: register %q node %q: %w", s.Name, n.ID, err)
		}
		c.startHeartbeat(reg, o.TTL)
	}
	return nil
}

func registration(s *Service, n *Node, ttl time.Duration) (*api.AgentServiceRegistration, error) {
	host, portStr, err := net.SplitHostPort(n.Address)
	if err != nil {
		return nil, fmt.Errorf("registry: node %q address %q is not host:port: %w", n.ID, n.Address, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("registry: node %q port %q: %w", n.ID, portStr, err)
	}
	tags, err := EncodeTags(s, n)
	if err != nil {
		return nil, err
	}
	deregAfter := max(ttl, minDeregisterAfter) + 5*time.Second
	return &api.AgentServiceRegistration{
		ID:      n.ID,
		Name:    s.Name,
		Address: host,
		Port:    port,
		Tags:    tags,
		Meta:    n.Metadata,
		Check: &api.AgentServiceCheck{
			CheckID:                        checkID(n.ID),
			Name:                           "moat heartbeat",
			TTL:                            ttl.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: deregAfter.String(),
		},
	}, nil
}

func checkID(nodeID string) string { return "service:" + nodeID }

func (c *Consul) register(ctx context.Context, reg *api.AgentServiceRegistration) error {
	return c.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx))
}

func (c *Consul) startHeartbeat(reg *api.AgentServiceRegistration, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if old, ok := c.heartbeats[reg.ID]; ok {
		old.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	hb := &heartbeat{reg: reg, ttl: ttl, cancel: cancel}
	c.heartbeats[reg.ID] = hb
	c.wg.Add(1)
	go c.beat(ctx, hb)
}

// beat keeps one node's TTL check passing. A refused heartbeat (unknown
// check after an agent restart, or the agent unreachable) is followed by a
// full registration on the next tick.
func (c *Consul) beat(ctx context.Context, hb *heartbeat) {
	defer c.wg.Done()
	interval := hb.ttl / 3
	t := time.NewTimer(interval)
	defer t.Stop()
	reregister := false
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if reregister {
			if err := c.register(ctx, hb.reg); err != nil {
				failures++
				c.cfg.logger.Warn("registry: re-register failed", "node", hb.reg.ID,
					"attempt", failures, "err", err)
				t.Reset(retryDelay(interval, failures))
				continue
			}
			failures = 0
			c.cfg.logger.Info("registry: node registered again", "node", hb.reg.ID)
			reregister = false
		}
		q := (&api.QueryOptions{}).WithContext(ctx)
		err := c.client.Agent().UpdateTTLOpts(checkID(hb.reg.ID), "", api.HealthPassing, q)
		if err != nil && ctx.Err() == nil {
			c.cfg.logger.Warn("registry: heartbeat refused", "node", hb.reg.ID, "err", err)
			reregister = true
			failures++
			t.Reset(retryDelay(interval, failures))
			continue
		}
		t.Reset(interval)
	}
}

// retryDelay backs off from 250ms, doubling with each failure, up to the
// heartbeat interval, with jitter.
func retryDelay(interval time.Duration, failures int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < failures && d < interval; i++ {
		d *= 2
	}
	d = min(d, max(interval, 250*time.Millisecond))
	return d/2 + rand.N(d/2+1)
}

// Deregister stops the heartbeats of s's nodes and removes them from the
// agent.
func (c *Consul) Deregister(ctx context.Context, s *Service) error {
	if s == nil {
		return nil
	}
	var errs []error
	for _, n := range s.Nodes {
		c.mu.Lock()
		if hb, ok := c.heartbeats[n.ID]; ok {
			hb.cancel()
			delete(c.heartbeats, n.ID)
		}
		c.mu.Unlock()
		q := (&api.QueryOptions{}).WithContext(ctx)
		if err := c.client.Agent().ServiceDeregisterOpts(n.ID, q); err != nil {
			errs = append(errs, fmt.Errorf("registry: deregister node %q: %w", n.ID, err))
		}
	}
	return errors.Join(errs...)
}

// GetService returns the passing nodes of name grouped by version. When the
// agent cannot be reached, it returns the last result it had.
func (c *Consul) GetService(ctx context.Context, name string) ([]*Service, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	entries, _, err := c.client.Health().Service(name, "", true, q)
	if err != nil {
		c.mu.Lock()
		cached, ok := c.cache[name]
		c.mu.Unlock()
		if ok && len(cached) > 0 {
			c.cfg.logger.Warn("registry: Consul unreachable, serving cached nodes", "service", name, "err", err)
			return cloneAll(cached), nil
		}
		return nil, fmt.Errorf("registry: query %q: %w", name, err)
	}
	services := fromEntries(entries)
	c.mu.Lock()
	c.cache[name] = services
	c.mu.Unlock()
	if len(services) == 0 {
		return nil, fmt.Errorf("%w: %q has no passing node", ErrNotFound, name)
	}
	return cloneAll(services), nil
}

// ListServices returns the names in the catalog, without nodes.
func (c *Consul) ListServices(ctx context.Context) ([]*Service, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	names, _, err := c.client.Catalog().Services(q)
	if err != nil {
		return nil, fmt.Errorf("registry: list services: %w", err)
	}
	var out []*Service
	for name := range names {
		out = append(out, &Service{Name: name})
	}
	slices.SortFunc(out, func(a, b *Service) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func fromEntries(entries []*api.ServiceEntry) []*Service {
	byVersion := map[string]*Service{}
	var out []*Service
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		dec := DecodeTags(e.Service.Tags)
		s, ok := byVersion[dec.Version]
		if !ok {
			s = &Service{Name: e.Service.Service, Version: dec.Version, Endpoints: dec.Endpoints}
			byVersion[dec.Version] = s
			out = append(out, s)
		}
		meta := e.Service.Meta
		if len(meta) == 0 {
			meta = dec.Metadata
		}
		s.Nodes = append(s.Nodes, &Node{
			ID:       e.Service.ID,
			Address:  net.JoinHostPort(addr, strconv.Itoa(e.Service.Port)),
			Metadata: meta,
		})
	}
	for _, s := range out {
		slices.SortFunc(s.Nodes, func(a, b *Node) int { return strings.Compare(a.ID, b.ID) })
	}
	return out
}

func cloneAll(ss []*Service) []*Service {
	out := make([]*Service, len(ss))
	for i, s := range ss {
		out[i] = s.Clone()
	}
	return out
}

// Watch follows the passing nodes of name with Consul blocking queries.
// While the agent is unreachable the watch retries with backoff and
// reports nothing, so the last known nodes stay in use.
func (c *Consul) Watch(ctx context.Context, name string) (Watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &consulWatcher{c: c, name: name, ctx: ctx, cancel: cancel}
	return w, nil
}

type consulWatcher struct {
	c        *Consul
	name     string
	ctx      context.Context
	cancel   context.CancelFunc
	index    uint64
	last     []*Service
	sent     bool
	reported bool
}

func (w *consulWatcher) Next() ([]*Service, error) {
	backoff := 100 * time.Millisecond
	for {
		if w.ctx.Err() != nil {
			return nil, ErrWatcherStopped
		}
		q := (&api.QueryOptions{WaitIndex: w.index, WaitTime: 30 * time.Second}).WithContext(w.ctx)
		entries, meta, err := w.c.client.Health().Service(w.name, "", true, q)
		if err != nil {
			if w.ctx.Err() != nil {
				return nil, ErrWatcherStopped
			}
			w.c.cfg.logger.Warn("registry: watch query failed, keeping last nodes",
				"service", w.name, "err", err)
			// A watch that has reported nothing yet starts from the nodes
			// this registry last saw, so new connections work during an
			// outage too.
			if !w.sent {
				w.c.mu.Lock()
				cached := w.c.cache[w.name]
				w.c.mu.Unlock()
				if len(cached) > 0 {
					w.sent, w.last = true, cached
					return cloneAll(cached), nil
				}
				// Nothing known yet: say why, so that callers fail with the
				// cause rather than a bare deadline. The watch goes on.
				if !w.reported {
					w.reported = true
					return nil, fmt.Errorf("registry: Consul at %s unreachable and no node of %q known: %w",
						w.c.cfg.address, w.name, err)
				}
			}
			// A restarted agent starts its indexes again from 1.
			w.index = 0
			select {
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			case <-w.ctx.Done():
				return nil, ErrWatcherStopped
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		w.reported = false
		if meta.LastIndex < w.index {
			w.index = 0
		} else {
			w.index = meta.LastIndex
		}
		snap := fromEntries(entries)
		w.c.mu.Lock()
		w.c.cache[w.name] = snap
		w.c.mu.Unlock()
		if !w.sent || !sameNodes(snap, w.last) {
			w.sent, w.last = true, snap
			return cloneAll(snap), nil
		}
	}
}

func (w *consulWatcher) Stop() { w.cancel() }

// Close stops all heartbeats without deregistering, and closes idle
// connections to the agent. Nodes still registered turn critical after
// their TTL.
func (c *Consul) Close() error {
	c.mu.Lock()
	c.closed = true
	for id, hb := range c.heartbeats {
		hb.cancel()
		delete(c.heartbeats, id)
	}
	c.mu.Unlock()
	c.wg.Wait()
	c.transport.CloseIdleConnections()
	return nil
}
