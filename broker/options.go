package broker

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/moatrpc/moat/security"
)

// Defaults of the options below.
const (
	// DefaultServerIdentity is the service name a NATS server's
	// certificate must carry: spiffe://<trust-domain>/svc/nats.
	DefaultServerIdentity = "nats"
	// DefaultMaxAge is how old an event may be when it reaches a
	// non-durable subscription.
	DefaultMaxAge = 2 * time.Minute
	// DefaultClockSkew is how far in the future an event's timestamp may
	// be, to allow for clocks that disagree.
	DefaultClockSkew = 30 * time.Second
	// DefaultReplayCacheSize is how many message ids a subscription
	// remembers to refuse replays.
	DefaultReplayCacheSize = 1 << 16
	// DefaultHandlerTimeout bounds each handler call.
	DefaultHandlerTimeout = 30 * time.Second
	// DefaultStreamMaxAge is how long streams created by the broker keep
	// messages, and the default maximum age of events reaching a durable
	// subscription.
	DefaultStreamMaxAge = 24 * time.Hour
	// DefaultAckWait is how long the server waits for a durable event's
	// acknowledgement before delivering it again; the broker extends it
	// while the handler runs.
	DefaultAckWait = 10 * time.Second
	// DefaultRedeliveryDelay is the first delay before a durable event
	// whose handler failed is delivered again; it doubles with each
	// attempt up to a minute.
	DefaultRedeliveryDelay = time.Second
)

// Option configures a broker built by [NewNATS] or [NewMemory]. Options
// marked "NATS only" are ignored by [NewMemory].
type Option interface{ applyBroker(*config) }

// SharedOption configures both a broker and an [Embedded] server.
type SharedOption interface {
	Option
	EmbeddedOption
}

type config struct {
	src            security.Source
	urls           []string
	serverID       string
	name           string
	logger         *slog.Logger
	onRefused      func(RefusedEvent)
	now            func() time.Time
	skew           time.Duration
	replaySize     int
	backoffBase    time.Duration
	backoffMax     time.Duration
	streamMaxAge   time.Duration
	streamReplicas int
	err            error
}

func newConfig(opts []Option) config {
	c := config{
		serverID:       DefaultServerIdentity,
		logger:         discardLogger(),
		now:            time.Now,
		skew:           DefaultClockSkew,
		replaySize:     DefaultReplayCacheSize,
		backoffBase:    250 * time.Millisecond,
		backoffMax:     5 * time.Second,
		streamMaxAge:   DefaultStreamMaxAge,
		streamReplicas: 1,
	}
	for _, o := range opts {
		if o != nil {
			o.applyBroker(&c)
		}
	}
	return c
}

func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

type brokerFunc func(*config)

func (f brokerFunc) applyBroker(c *config) { f(c) }

// WithIdentity sets the workload identity the broker presents to the NATS
// server, signs published events with, and verifies received events
// against. It is required by [NewNATS]; a [Memory] broker without it
// neither signs nor verifies.
func WithIdentity(src security.Source) Option {
	return brokerFunc(func(c *config) { c.src = src })
}

// WithURL sets the NATS servers to connect to, as tls://host:port (or
// nats://host:port, upgraded to TLS all the same). NATS only; required.
func WithURL(urls ...string) Option {
	return brokerFunc(func(c *config) { c.urls = append(c.urls, urls...) })
}

// WithServerIdentity sets the service name the NATS server's certificate
// must carry; the default is [DefaultServerIdentity]. NATS only.
func WithServerIdentity(service string) Option {
	return brokerFunc(func(c *config) { c.serverID = service })
}

// WithName sets the connection name the NATS server shows in its
// monitoring; the default is the identity's service name. NATS only.
func WithName(name string) Option {
	return brokerFunc(func(c *config) { c.name = name })
}

// WithRefusalHook sets a function called for every refused event, for
// metrics and audit. It must be safe for concurrent use and must not
// block.
func WithRefusalHook(hook func(RefusedEvent)) Option {
	return brokerFunc(func(c *config) { c.onRefused = hook })
}

// WithClock sets the clock used to stamp and check events; for tests.
func WithClock(now func() time.Time) Option {
	return brokerFunc(func(c *config) {
		if now == nil {
			c.invalid("WithClock(nil)")
			return
		}
		c.now = now
	})
}

// WithClockSkew sets how far in the future an event's timestamp may be;
// the default is [DefaultClockSkew].
func WithClockSkew(d time.Duration) Option {
	return brokerFunc(func(c *config) {
		if d < 0 {
			c.invalid("negative clock skew %v", d)
			return
		}
		c.skew = d
	})
}

// WithReplayCacheSize sets how many message ids each subscription
// remembers; the default is [DefaultReplayCacheSize]. When a
// subscription sees more events within its maximum age than it
// remembers, it refuses events older than the oldest one it remembers
// rather than risk accepting a replay.
func WithReplayCacheSize(n int) Option {
	return brokerFunc(func(c *config) {
		if n < 1 {
			c.invalid("replay cache size %d, want at least 1", n)
			return
		}
		c.replaySize = n
	})
}

// WithReconnectBackoff sets the delays between reconnection attempts: the
// first is about base, each next one doubles up to max, and each is
// jittered down by up to half. Reconnection never gives up. The defaults
// are 250ms and 5s. NATS only.
func WithReconnectBackoff(base, max time.Duration) Option {
	return brokerFunc(func(c *config) {
		if base <= 0 || max < base {
			c.invalid("reconnect backoff %v..%v, want 0 < base <= max", base, max)
			return
		}
		c.backoffBase, c.backoffMax = base, max
	})
}

// WithStreamMaxAge sets how long streams the broker creates keep
// messages; the default is [DefaultStreamMaxAge]. Streams that already
// exist are not changed. NATS only.
func WithStreamMaxAge(d time.Duration) Option {
	return brokerFunc(func(c *config) {
		if d <= 0 {
			c.invalid("stream max age %v, want > 0", d)
			return
		}
		c.streamMaxAge = d
	})
}

// WithStreamReplicas sets the number of replicas of streams the broker
// creates, for NATS clusters; the default is 1. NATS only.
func WithStreamReplicas(n int) Option {
	return brokerFunc(func(c *config) {
		if n < 1 || n > 5 {
			c.invalid("stream replicas %d, want 1 to 5", n)
			return
		}
		c.streamReplicas = n
	})
}

type loggerOption struct{ l *slog.Logger }

func (o loggerOption) applyBroker(c *config) {
	if o.l != nil {
		c.logger = o.l
	}
}

func (o loggerOption) applyEmbedded(c *embeddedConfig) {
	if o.l != nil {
		c.logger = o.l
	}
}

// WithLogger sets the logger for connection events (disconnected,
// reconnected), refused events and failed handlers, or for an embedded
// server's own log. The default discards everything: the broker never
// prints.
func WithLogger(l *slog.Logger) SharedOption { return loggerOption{l} }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// PublishOption configures one Publish call.
type PublishOption interface{ applyPublish(*publishConfig) }

type publishConfig struct {
	persist bool
}

type publishFunc func(*publishConfig)

func (f publishFunc) applyPublish(c *publishConfig) { f(c) }

// WithPersistence publishes through JetStream: the event is stored in the
// stream of its topic prefix (created when missing) and Publish returns
// only once the stream has acknowledged it, retrying through disconnections
// until ctx ends. Retries carry the same message id, which the stream uses
// to drop duplicates. A [Memory] broker ignores it.
func WithPersistence() PublishOption {
	return publishFunc(func(c *publishConfig) { c.persist = true })
}

// SubscribeOption configures one subscription.
type SubscribeOption interface{ applySubscribe(*subscribeConfig) }

type subscribeConfig struct {
	queue           string
	durable         string
	publishers      []string
	maxAge          time.Duration
	handlerTimeout  time.Duration
	pendingMsgs     int
	pendingBytes    int
	redeliveryDelay time.Duration
	ackWait         time.Duration
	err             error
}

// subscribeSettings checks the arguments shared by every Subscribe and
// returns the subscription's settings.
func subscribeSettings(topic string, h Handler, opts []SubscribeOption) (subscribeConfig, error) {
	if err := checkTopic(topic, true); err != nil {
		return subscribeConfig{}, err
	}
	if h == nil {
		return subscribeConfig{}, fmt.Errorf("%w: nil handler", ErrInvalidOption)
	}
	sc := newSubscribeConfig(opts)
	return sc, sc.err
}

func newSubscribeConfig(opts []SubscribeOption) subscribeConfig {
	c := subscribeConfig{
		handlerTimeout:  DefaultHandlerTimeout,
		pendingMsgs:     1 << 16,
		pendingBytes:    64 << 20,
		redeliveryDelay: DefaultRedeliveryDelay,
		ackWait:         DefaultAckWait,
	}
	for _, o := range opts {
		if o != nil {
			o.applySubscribe(&c)
		}
	}
	if c.err == nil && c.queue != "" && c.durable != "" {
		c.invalid("WithQueue and WithDurable together: subscribers sharing a durable " +
			"name already share its events")
	}
	return c
}

func (c *subscribeConfig) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

type subscribeFunc func(*subscribeConfig)

func (f subscribeFunc) applySubscribe(c *subscribeConfig) { f(c) }

// WithQueue makes the subscription a member of a queue group: each event
// goes to one member of the group only. The embedded NATS server lets a
// workload join only the group named after its own service.
func WithQueue(group string) SubscribeOption {
	return subscribeFunc(func(c *subscribeConfig) {
		if !validName(group) {
			c.invalid("queue group %q: use letters, digits, '-' and '_'", group)
			return
		}
		c.queue = group
	})
}

// WithDurable makes the subscription a durable JetStream consumer named
// name: events are stored while no subscriber runs and delivered at least
// once, acknowledged when the handler returns nil and delivered again,
// after a growing delay, when it returns an error. Subscribers anywhere
// sharing a durable name share its events, each going to one of them. The
// stream of the topic's first token is created when missing (see the
// package doc). A [Memory] broker shares a durable name's events among its
// subscribers without storage or redelivery.
func WithDurable(name string) SubscribeOption {
	return subscribeFunc(func(c *subscribeConfig) {
		if !validName(name) {
			c.invalid("durable name %q: use letters, digits, '-' and '_'", name)
			return
		}
		c.durable = name
	})
}

// WithPublishers accepts events only from the named services of the
// subscriber's trust domain; others are refused with
// [ReasonPublisherNotAllowed]. Without it, any verified workload of the
// trust domain may publish to the topic.
func WithPublishers(services ...string) SubscribeOption {
	return subscribeFunc(func(c *subscribeConfig) {
		for _, s := range services {
			if err := security.ValidateServiceName(s); err != nil {
				c.invalid("publisher: %v", err)
				return
			}
		}
		c.publishers = append(c.publishers, services...)
	})
}

// WithMaxAge sets how long after signing an event is still accepted; the
// default is [DefaultMaxAge], or the broker's stream max age for durable
// subscriptions. Message ids are remembered as long, to refuse replays.
func WithMaxAge(d time.Duration) SubscribeOption {
	return subscribeFunc(func(c *subscribeConfig) {
		if d <= 0 {
			c.invalid("max age %v, want > 0", d)
			return
		}
		c.maxAge = d
	})
}

// WithHandlerTimeout bounds each handler call by cancelling its context;
// the default is [DefaultHandlerTimeout].
func WithHandlerTimeout(d time.Duration) SubscribeOption {
	return subscribeFunc(func(c *subscribeConfig) {
		if d <= 0 {
			c.invalid("handler timeout %v, want > 0", d)
			return
		}
		c.handlerTimeout = d
	})
}

// WithPendingLimits sets how many events, and how many bytes of them, may
// wait for the handler; defaults 65536 and 64 MiB. On a non-durable NATS
// subscription, events past the limit are dropped and logged (NATS's slow
// consumer rule); a [Memory] broker makes Publish wait instead; a durable
// subscription fetches at most min(msgs, 1000) events ahead and leaves at
// most msgs unacknowledged.
func WithPendingLimits(msgs, bytes int) SubscribeOption {
	return subscribeFunc(func(c *subscribeConfig) {
		if msgs < 1 || bytes < 1 {
			c.invalid("pending limits %d msgs, %d bytes, want > 0", msgs, bytes)
			return
		}
		c.pendingMsgs, c.pendingBytes = msgs, bytes
	})
}

// WithRedeliveryDelay sets the first delay before a durable event whose
// handler failed is delivered again; it doubles with each attempt up to a
// minute. The default is [DefaultRedeliveryDelay].
func WithRedeliveryDelay(d time.Duration) SubscribeOption {
	return subscribeFunc(func(c *subscribeConfig) {
		if d <= 0 {
			c.invalid("redelivery delay %v, want > 0", d)
			return
		}
		c.redeliveryDelay = d
	})
}

// WithAckWait sets how long the server waits for the acknowledgement of a
// durable event before delivering it again; the default is
// [DefaultAckWait]. While a handler runs, the broker tells the server
// every half of it that the event is in progress, so the wait bounds how
// soon an event lost in flight (a crashed subscriber, a restarted server)
// is delivered again, not how long a handler may take. Events fetched
// ahead but still queued behind a slow handler are not extended, and may
// be delivered again too.
func WithAckWait(d time.Duration) SubscribeOption {
	return subscribeFunc(func(c *subscribeConfig) {
		if d < time.Second {
			c.invalid("ack wait %v, want at least 1s", d)
			return
		}
		c.ackWait = d
	})
}
