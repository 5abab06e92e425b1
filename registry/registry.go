// Package registry is moat's service discovery: the [Registry] interface in
// go-micro's shape, a Consul backend for production ([NewConsul]), an
// in-memory backend for a single process ([NewMemory]), and a gRPC resolver
// fed by either ([NewResolver]).
//
// Registry contents are not trusted for security decisions: addresses only
// say where to dial, and the TLS layer checks that whoever answers there is
// the service that was asked for.
package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Errors returned by registries.
var (
	// ErrNotFound is returned by GetService when no healthy node of the
	// service is known.
	ErrNotFound = errors.New("registry: service not found")
	// ErrWatcherStopped is returned by Watcher.Next after Stop.
	ErrWatcherStopped = errors.New("registry: watcher stopped")
	// ErrIdentityMismatch is returned by Register when the service's name
	// is not the one in the registry client's workload identity.
	ErrIdentityMismatch = errors.New("registry: identity does not match service")
)

// Service is a named, versioned service and the nodes that serve it.
type Service struct {
	Name      string
	Version   string
	Metadata  map[string]string
	Endpoints []*Endpoint
	Nodes     []*Node
}

// Node is one running instance of a service.
type Node struct {
	// ID is unique across all nodes of all services.
	ID string
	// Address is host:port.
	Address  string
	Metadata map[string]string
}

// Endpoint describes one method of a service, as go-micro records it.
type Endpoint struct {
	Name     string
	Request  *Value
	Response *Value
	Metadata map[string]string
}

// Value describes a request or response type of an [Endpoint].
type Value struct {
	Name   string
	Type   string
	Values []*Value
}

// Metadata keys moat sets on the nodes it registers.
const (
	MetaProtocol  = "protocol"
	MetaIdentity  = "identity"
	MetaServer    = "server"
	MetaRegistry  = "registry"
	MetaBroker    = "broker"
	MetaTransport = "transport"
)

// RegisterOption changes one registration.
type RegisterOption func(*RegisterOptions)

// RegisterOptions are the settings of one registration.
type RegisterOptions struct {
	// TTL is how long a node stays healthy without a heartbeat. Zero
	// selects the registry's default.
	TTL time.Duration
}

// WithTTL sets how long a registered node stays healthy without a
// heartbeat; the registry sends heartbeats on its own.
func WithTTL(ttl time.Duration) RegisterOption {
	return func(o *RegisterOptions) { o.TTL = ttl }
}

// Registry finds the nodes of services. Implementations are safe for
// concurrent use.
type Registry interface {
	// Register announces every node of s and keeps them healthy until
	// Deregister or Close.
	Register(ctx context.Context, s *Service, opts ...RegisterOption) error
	// Deregister removes every node of s.
	Deregister(ctx context.Context, s *Service) error
	// GetService returns the healthy nodes of a service, grouped by
	// version, or ErrNotFound.
	GetService(ctx context.Context, name string) ([]*Service, error)
	// ListServices returns the known services, without nodes.
	ListServices(ctx context.Context) ([]*Service, error)
	// Watch follows the healthy nodes of one service.
	Watch(ctx context.Context, name string) (Watcher, error)
	// String names the backend.
	String() string
}

// Watcher reports the healthy nodes of one service as they change.
type Watcher interface {
	// Next blocks until the set of healthy nodes differs from the one
	// last returned (the first call returns the current set at once) and
	// returns it grouped by version. It returns ErrWatcherStopped after
	// Stop or when the watch's context ends.
	Next() ([]*Service, error)
	// Stop ends the watch. It is safe to call more than once.
	Stop()
}

func validate(s *Service) error {
	if s == nil || s.Name == "" {
		return errors.New("registry: service has no name")
	}
	if len(s.Nodes) == 0 {
		return fmt.Errorf("registry: service %q has no nodes to register", s.Name)
	}
	for _, n := range s.Nodes {
		if n.ID == "" || n.Address == "" {
			return fmt.Errorf("registry: service %q has a node without id or address", s.Name)
		}
	}
	return nil
}

// Clone returns a deep copy of s.
func (s *Service) Clone() *Service {
	if s == nil {
		return nil
	}
	c := &Service{Name: s.Name, Version: s.Version, Metadata: maps.Clone(s.Metadata)}
	for _, e := range s.Endpoints {
		c.Endpoints = append(c.Endpoints, &Endpoint{
			Name: e.Name, Request: e.Request.clone(), Response: e.Response.clone(),
			Metadata: maps.Clone(e.Metadata),
		})
	}
	for _, n := range s.Nodes {
		c.Nodes = append(c.Nodes, &Node{ID: n.ID, Address: n.Address, Metadata: maps.Clone(n.Metadata)})
	}
	return c
}

func (v *Value) clone() *Value {
	if v == nil {
		return nil
	}
	c := &Value{Name: v.Name, Type: v.Type}
	for _, x := range v.Values {
		c.Values = append(c.Values, x.clone())
	}
	return c
}

// Addresses returns the addresses of all nodes in services, sorted and
// without duplicates.
func Addresses(services []*Service) []string {
	var out []string
	for _, s := range services {
		for _, n := range s.Nodes {
			out = append(out, n.Address)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sameNodes reports whether two snapshots hold the same nodes.
func sameNodes(a, b []*Service) bool {
	key := func(ss []*Service) []string {
		var k []string
		for _, s := range ss {
			for _, n := range s.Nodes {
				k = append(k, s.Version+"|"+n.ID+"|"+n.Address)
			}
		}
		slices.Sort(k)
		return k
	}
	return slices.Equal(key(a), key(b))
}
