package broker

import (
	"context"
	"maps"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Broker publishes messages to topics and delivers them to the handlers
// subscribed to those topics. Implementations are safe for concurrent use.
type Broker interface {
	// Connect opens the connection; Publish and Subscribe fail with
	// [ErrNotConnected] before it.
	Connect(ctx context.Context) error
	// Disconnect ends every subscription, lets running handlers finish
	// until ctx ends, and closes the connection.
	Disconnect(ctx context.Context) error
	// Publish signs msg as the broker's workload and sends it to topic.
	// msg is not modified and may be reused once Publish returns.
	Publish(ctx context.Context, topic string, msg *Message, opts ...PublishOption) error
	// Subscribe delivers the verified events of topic to h until
	// Unsubscribe or Disconnect. Handlers of one subscription run one at a
	// time.
	Subscribe(topic string, h Handler, opts ...SubscribeOption) (Subscriber, error)
	// String names the implementation: "nats" or "memory".
	String() string
}

// Message is the payload of an event: header metadata and a body, by
// convention a marshalled protobuf message (see [Encode] and [Decode]).
type Message struct {
	Header map[string]string
	Body   []byte
}

// Handler processes one event. Its context carries the event's verified
// publisher ([PublisherFromContext]) and metadata ([EventFromContext]), and
// ends at the subscription's handler timeout or when it is unsubscribed.
// For a durable subscription, a nil error acknowledges the event and an
// error asks for its redelivery; for other subscriptions the error is
// logged.
type Handler func(ctx context.Context, msg *Message) error

// Subscriber is an active subscription.
type Subscriber interface {
	// Topic returns the topic pattern subscribed to.
	Topic() string
	// Unsubscribe stops deliveries. A durable consumer keeps its place on
	// the server, so that a later subscription with the same durable name
	// resumes from it. Unsubscribe is idempotent.
	Unsubscribe() error
}

// Event describes a delivered event: where it came from and who sent it.
type Event struct {
	// Topic is the subject the event was published to; it differs from
	// the subscription's topic when that one holds wildcards.
	Topic string
	// ID is the publisher's random message id, in hex.
	ID string
	// Publisher is the verified SPIFFE ID of the publisher. It is zero
	// only on a [Memory] broker that has no identity.
	Publisher spiffeid.ID
	// Time is when the publisher signed the event, by its clock.
	Time time.Time
	// Header is the event's header metadata, as signed.
	Header map[string]string
	// Delivery counts deliveries of this event to the subscription: 1,
	// then more when a durable subscription gets it again.
	Delivery int
}

type eventKey struct{}

// ContextWithEvent returns a context carrying ev; brokers do this for every
// handler call, and tests of handlers may do it too.
func ContextWithEvent(ctx context.Context, ev Event) context.Context {
	return context.WithValue(ctx, eventKey{}, ev)
}

// EventFromContext returns the event a handler is processing, and false
// outside a handler.
func EventFromContext(ctx context.Context) (Event, bool) {
	ev, ok := ctx.Value(eventKey{}).(Event)
	if ok {
		ev.Header = maps.Clone(ev.Header)
	}
	return ev, ok
}

// PublisherFromContext returns the verified SPIFFE ID of the publisher of
// the event a handler is processing, and false outside a handler or for an
// event that carries no verified publisher.
func PublisherFromContext(ctx context.Context) (spiffeid.ID, bool) {
	ev, ok := ctx.Value(eventKey{}).(Event)
	return ev.Publisher, ok && !ev.Publisher.IsZero()
}

// Both implementations are Brokers.
var (
	_ Broker = (*NATS)(nil)
	_ Broker = (*Memory)(nil)
)
