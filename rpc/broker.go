package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/moatrpc/moat/broker"
	"github.com/moatrpc/moat/security/fields"
)

// ErrNoBroker is returned by Publish and Subscribe on a service without a
// broker.
var ErrNoBroker = errors.New("rpc: no broker: pass rpc.WithBroker, or set MOAT_NATS_URL with rpc.WithEnv")

// WithBroker sets the broker the service publishes events to and
// subscribes on. A broker given here is the caller's to connect and
// disconnect; one created by [WithEnv] from MOAT_NATS_URL is connected by
// Start and disconnected by Stop.
func WithBroker(b broker.Broker) Option {
	return optionFunc(func(o *options) { o.broker = b })
}

type subscription struct {
	topic string
	h     broker.Handler
	opts  []broker.SubscribeOption
}

type pubsub struct {
	mu      sync.Mutex
	pending []subscription
	subs    []broker.Subscriber
	started bool
}

// Broker returns the service's broker, or ErrNoBroker.
func (s *Service) Broker() (broker.Broker, error) {
	if s.opts.broker == nil {
		return nil, ErrNoBroker
	}
	return s.opts.broker, nil
}

// Publish sends msg as an event on topic. Its SECRET fields are sealed with
// the service's keysets, the broker signs it with the service's workload
// key, and subscribers learn the publisher's verified identity. An event
// with SECRET fields is refused when the service has no keyset.
func (s *Service) Publish(ctx context.Context, topic string, msg proto.Message, opts ...broker.PublishOption) error {
	b := s.opts.broker
	if b == nil {
		return ErrNoBroker
	}
	var sealer broker.Sealer
	if s.sealer != nil {
		sealer = s.sealer
	} else if fields.NeedsSealing(msg) {
		return fmt.Errorf("%w: %s carries SECRET fields; configure rpc.WithKeysetDir",
			ErrNoKeyset, msg.ProtoReflect().Descriptor().FullName())
	}
	m, err := broker.Encode(msg, sealer)
	if err != nil {
		return fmt.Errorf("rpc: publish to %q: %w", topic, err)
	}
	if err := b.Publish(ctx, topic, m, opts...); err != nil {
		return fmt.Errorf("rpc: publish to %q: %w", topic, err)
	}
	return nil
}

// Subscribe calls h with every event of topic decoded as T, its SECRET
// fields opened with the service's keysets. The handler's context carries
// the publisher's verified identity (broker.PublisherFromContext) and the
// event's details (broker.EventFromContext). Events that fail signature,
// identity or replay checks never reach h. Subscriptions made before Start
// begin with it; Stop ends them. Use broker.WithQueue to share events among
// the nodes of a service.
func Subscribe[T proto.Message](
	s *Service,
	topic string,
	h func(ctx context.Context, event T) error,
	opts ...broker.SubscribeOption,
) error {
	if s.opts.broker == nil {
		return ErrNoBroker
	}
	var zero T
	mt := zero.ProtoReflect().Type()
	handler := func(ctx context.Context, m *broker.Message) error {
		event := mt.New().Interface().(T)
		var sealer broker.Sealer
		if s.sealer != nil {
			sealer = s.sealer
		}
		if err := broker.Decode(m, event, sealer); err != nil {
			return fmt.Errorf("rpc: event on %q: %w", topic, err)
		}
		return h(ctx, event)
	}
	sub := subscription{topic: topic, h: handler, opts: opts}

	s.pubsub.mu.Lock()
	defer s.pubsub.mu.Unlock()
	if !s.pubsub.started {
		s.pubsub.pending = append(s.pubsub.pending, sub)
		return nil
	}
	return s.subscribeLocked(sub)
}

func (s *Service) subscribeLocked(sub subscription) error {
	active, err := s.opts.broker.Subscribe(sub.topic, sub.h, sub.opts...)
	if err != nil {
		return fmt.Errorf("rpc: subscribe to %q: %w", sub.topic, err)
	}
	s.pubsub.subs = append(s.pubsub.subs, active)
	return nil
}

// startBroker connects a broker the service owns and makes the pending
// subscriptions.
func (s *Service) startBroker(ctx context.Context) error {
	if s.opts.broker == nil {
		return nil
	}
	if s.ownsBroker {
		if err := s.opts.broker.Connect(ctx); err != nil {
			return fmt.Errorf("rpc: connect broker: %w", err)
		}
	}
	s.pubsub.mu.Lock()
	defer s.pubsub.mu.Unlock()
	s.pubsub.started = true
	for _, sub := range s.pubsub.pending {
		if err := s.subscribeLocked(sub); err != nil {
			return err
		}
	}
	s.pubsub.pending = nil
	return nil
}

// stopBroker ends the subscriptions and disconnects an owned broker.
func (s *Service) stopBroker(ctx context.Context) error {
	if s.opts.broker == nil {
		return nil
	}
	s.pubsub.mu.Lock()
	subs := s.pubsub.subs
	s.pubsub.subs, s.pubsub.started = nil, false
	s.pubsub.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		if err := sub.Unsubscribe(); err != nil {
			errs = append(errs, fmt.Errorf("rpc: unsubscribe %q: %w", sub.Topic(), err))
		}
	}
	if s.ownsBroker {
		if err := s.opts.broker.Disconnect(ctx); err != nil {
			errs = append(errs, fmt.Errorf("rpc: disconnect broker: %w", err))
		}
	}
	return errors.Join(errs...)
}
