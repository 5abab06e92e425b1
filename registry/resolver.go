package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/resolver"
)

// Scheme is the gRPC target scheme resolved through a moat registry:
// "moat:///<service>".
const Scheme = "moat"

// Target returns the gRPC target that resolves service through the
// registry.
func Target(service string) string { return Scheme + ":///" + service }

// NewResolver returns a gRPC resolver builder for [Scheme] that follows
// services in reg with Watch. When the registry is unreachable the last
// known addresses stay in use.
func NewResolver(reg Registry) resolver.Builder {
	return &builder{reg: reg}
}

type builder struct{ reg Registry }

func (b *builder) Scheme() string { return Scheme }

func (b *builder) Build(t resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	name := strings.TrimPrefix(t.Endpoint(), "/")
	if name == "" {
		return nil, fmt.Errorf("registry: target %q names no service", t.URL.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.reg.Watch(ctx, name)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("registry: watch %q: %w", name, err)
	}
	r := &watchResolver{cancel: cancel, w: w, done: make(chan struct{})}
	go r.run(cc, name)
	return r, nil
}

type watchResolver struct {
	cancel context.CancelFunc
	w      Watcher
	done   chan struct{}
}

func (r *watchResolver) run(cc resolver.ClientConn, name string) {
	defer close(r.done)
	for {
		services, err := r.w.Next()
		if errors.Is(err, ErrWatcherStopped) {
			return
		}
		if err != nil {
			cc.ReportError(fmt.Errorf("registry: watch %q: %w", name, err))
			continue
		}
		addrs := Addresses(services)
		if len(addrs) == 0 {
			cc.ReportError(fmt.Errorf("%w: no healthy node of %q", ErrNotFound, name))
			continue
		}
		state := resolver.State{}
		for _, a := range addrs {
			state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
		}
		// An error here means the balancer rejected the update; the next
		// change of the registry brings a fresh one.
		_ = cc.UpdateState(state)
	}
}

// ResolveNow is a no-op: the watch already delivers every change.
func (r *watchResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch and waits for its goroutine.
func (r *watchResolver) Close() {
	r.w.Stop()
	r.cancel()
	<-r.done
}
