package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moatrpc/moat/security"
)

// NATS is a broker on a NATS server or cluster, reached over mutual TLS
// 1.3: it presents its workload certificate and accepts the server only
// when the server proves the identity of the "nats" service (see
// [WithServerIdentity]) with a certificate from the trust bundle. After
// the first connection it reconnects forever with jittered exponential
// backoff and restores its subscriptions. A NATS is safe for concurrent
// use.
type NATS struct {
	cfg    config
	tls    *tls.Config
	chains *chainVerifier

	mu      sync.Mutex
	nc      *nats.Conn
	js      jetstream.JetStream
	closed  chan struct{} // closed when nc is closed
	subs    map[*natsSub]struct{}
	streams map[string]bool // streams known to exist
}

// NewNATS returns a NATS broker; it connects on Connect. It refuses to
// build without an identity ([WithIdentity]) or a server URL ([WithURL]),
// and never builds one that could speak plaintext.
func NewNATS(opts ...Option) (*NATS, error) {
	cfg := newConfig(opts)
	if cfg.err != nil {
		return nil, cfg.err
	}
	if cfg.src == nil || cfg.src.Current() == nil {
		return nil, fmt.Errorf("%w: pass broker.WithIdentity with one loaded by "+
			"security.LoadIdentity; create dev certificates with 'moat certs init' and "+
			"'moat certs issue <service>'", ErrNoIdentity)
	}
	if len(cfg.urls) == 0 {
		return nil, fmt.Errorf("%w: pass broker.WithURL(\"tls://host:4222\"); 'moat dev' "+
			"starts an embedded server and prints its URL", ErrNoURL)
	}
	for _, u := range cfg.urls {
		if err := checkURL(u); err != nil {
			return nil, err
		}
	}
	conf, err := security.ClientTLSConfig(cfg.src, cfg.serverID)
	if err != nil {
		return nil, err
	}
	// NATS is not HTTP/2; keep moat's TLS checks but no ALPN.
	conf = conf.Clone()
	conf.NextProtos = nil
	if cfg.name == "" {
		cfg.name = cfg.src.Current().Service()
	}
	return &NATS{
		cfg:     cfg,
		tls:     conf,
		chains:  newChainVerifier(cfg.src),
		subs:    make(map[*natsSub]struct{}),
		streams: make(map[string]bool),
	}, nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNoURL, raw, err)
	}
	if u.Scheme != "tls" && u.Scheme != "nats" {
		return fmt.Errorf("%w: %q: want tls://host:port", ErrNoURL, raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%w: %q: no host", ErrNoURL, raw)
	}
	if u.User != nil {
		return fmt.Errorf("%w: %q: moat authenticates with certificates, not passwords in URLs",
			ErrNoURL, raw)
	}
	return nil
}

// String returns "nats".
func (n *NATS) String() string { return "nats" }

// Connect opens the connection, failing when the server cannot be reached
// or refuses the handshake before ctx ends. Once connected, the broker
// reconnects by itself for ever.
func (n *NATS) Connect(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nc != nil {
		return nil
	}
	closed := make(chan struct{})
	opts := []nats.Option{
		nats.Name(n.cfg.name),
		nats.Secure(n.tls),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(n.backoff),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is a disconnection asked for by Disconnect.
			level := slog.LevelInfo
			if err != nil {
				level = slog.LevelWarn
			}
			n.cfg.logger.Log(context.Background(), level, "broker: disconnected from NATS",
				"err", errString(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			n.cfg.logger.Info("broker: reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			n.cfg.logger.Debug("broker: reconnection attempt failed", "err", errString(err))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"err", errString(err)}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			n.cfg.logger.Error("broker: NATS error", attrs...)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(max(time.Until(dl), time.Millisecond)))
	}

	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(strings.Join(n.cfg.urls, ","), opts...)
		done <- result{nc, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		// Close the connection should it still come up.
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return fmt.Errorf("broker: connect to %s: %w", strings.Join(n.cfg.urls, ","), ctx.Err())
	}
	if r.err != nil {
		return fmt.Errorf("broker: connect to %s: %w", strings.Join(n.cfg.urls, ","), r.err)
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		r.nc.Close()
		return fmt.Errorf("broker: jetstream: %w", err)
	}
	n.nc, n.js, n.closed = r.nc, js, closed
	n.cfg.logger.Info("broker: connected to NATS", "url", r.nc.ConnectedUrlRedacted())
	return nil
}

// backoff returns the delay before the next pass over the server list:
// exponential from the base, capped, and jittered down by up to half so
// that clients of a restarted server do not all return at once.
func (n *NATS) backoff(attempts int) time.Duration {
	d := n.cfg.backoffBase
	for i := 1; i < attempts && d < n.cfg.backoffMax; i++ {
		d *= 2
	}
	d = min(d, n.cfg.backoffMax)
	return d/2 + rand.N(d/2+1)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Disconnect ends every subscription, lets the connection flush what was
// published and finish running handlers until ctx ends, then closes it.
func (n *NATS) Disconnect(ctx context.Context) error {
	n.mu.Lock()
	nc, closed := n.nc, n.closed
	subs := make([]*natsSub, 0, len(n.subs))
	for s := range n.subs {
		subs = append(subs, s)
	}
	n.nc, n.js = nil, nil
	clear(n.streams)
	n.mu.Unlock()
	if nc == nil {
		return nil
	}

	for _, s := range subs {
		s.stop(ctx)
	}
	if err := nc.Drain(); err != nil {
		nc.Close()
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		<-closed
		return fmt.Errorf("broker: disconnect: %w", ctx.Err())
	}
}

func (n *NATS) conn() (*nats.Conn, jetstream.JetStream, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nc == nil {
		return nil, nil, ErrNotConnected
	}
	return n.nc, n.js, nil
}

// Publish signs msg and sends it to topic. Without [WithPersistence] it
// is handed to the connection, which buffers it through a reconnection,
// and delivered at most once to subscribers connected at the time. With
// it, Publish returns once the stream stored the event.
func (n *NATS) Publish(
	ctx context.Context,
	topic string,
	msg *Message,
	opts ...PublishOption,
) error {
	if err := checkTopic(topic, false); err != nil {
		return err
	}
	if msg == nil {
		return fmt.Errorf("%w: nil message", ErrInvalidOption)
	}
	var pc publishConfig
	for _, o := range opts {
		if o != nil {
			o.applyPublish(&pc)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("broker: publish %q: %w", topic, err)
	}
	nc, js, err := n.conn()
	if err != nil {
		return err
	}
	e, data, err := seal(n.cfg.src, topic, msg, n.cfg.now())
	if err != nil {
		return err
	}
	if !pc.persist {
		if err := nc.Publish(topic, data); err != nil {
			return fmt.Errorf("broker: publish %q: %w", topic, err)
		}
		return nil
	}
	return n.publishStored(ctx, js, topic, e.idHex(), data)
}

// publishStored publishes to JetStream until the stream acknowledges or
// ctx ends; every attempt carries the same message id, which the stream
// uses to drop duplicates within its duplicate window.
func (n *NATS) publishStored(
	ctx context.Context,
	js jetstream.JetStream,
	topic, id string,
	data []byte,
) error {
	stream, _, err := streamFor(topic)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: topic, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.ensureStream(actx, js, topic)
		if err == nil {
			_, err = js.PublishMsg(actx, msg, jetstream.WithRetryAttempts(0))
		}
		cancel()
		if err == nil {
			return nil
		}
		if !retryable(err) {
			return fmt.Errorf("broker: publish %q: %w", topic, err)
		}
		// The stream may have gone with the server: look for it again.
		n.forgetStream(stream)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %q: %v: %w", ErrNotPersisted, topic, err, ctx.Err())
		case <-time.After(wait + rand.N(wait)):
		}
		wait = min(2*wait, time.Second)
	}
}

func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}

func (n *NATS) forgetStream(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.streams, name)
}

// ensureStream creates the stream of topic's first token when missing.
// Streams that exist are left as they are.
func (n *NATS) ensureStream(ctx context.Context, js jetstream.JetStream, topic string) error {
	name, subjects, err := streamFor(topic)
	if err != nil {
		return err
	}
	n.mu.Lock()
	known := n.streams[name]
	n.mu.Unlock()
	if known {
		return nil
	}

	_, err = js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       name,
			Subjects:   subjects,
			Storage:    jetstream.FileStorage,
			Retention:  jetstream.LimitsPolicy,
			MaxAge:     n.cfg.streamMaxAge,
			Replicas:   n.cfg.streamReplicas,
			Duplicates: 2 * time.Minute,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("broker: stream %s for %q: %w", name, topic, err)
	}
	n.mu.Lock()
	n.streams[name] = true
	n.mu.Unlock()
	return nil
}

// Subscribe starts delivering topic's verified events to h. Once it
// returns, the server knows the subscription (unless the connection is
// down; it is then registered on reconnection). With [WithDurable] it
// creates or resumes a JetStream consumer, which needs a few server round
// trips, bounded to ten seconds.
func (n *NATS) Subscribe(topic string, h Handler, opts ...SubscribeOption) (Subscriber, error) {
	sc, err := subscribeSettings(topic, h, opts)
	if err != nil {
		return nil, err
	}
	nc, js, err := n.conn()
	if err != nil {
		return nil, err
	}
	var s *natsSub
	if sc.durable != "" {
		s, err = n.subscribeDurable(nc, js, topic, h, sc)
	} else {
		s, err = n.subscribeCore(nc, topic, h, sc)
	}
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.subs[s] = struct{}{}
	n.mu.Unlock()
	return s, nil
}

func (n *NATS) subscribeCore(
	nc *nats.Conn,
	topic string,
	h Handler,
	sc subscribeConfig,
) (*natsSub, error) {
	d := newDispatcher(&n.cfg, topic, h, sc, n.chains, DefaultMaxAge)
	cb := func(m *nats.Msg) { d.deliver(m.Subject, m.Data, delivery{count: 1}) }
	var (
		sub *nats.Subscription
		err error
	)
	if sc.queue != "" {
		sub, err = nc.QueueSubscribe(topic, sc.queue, cb)
	} else {
		sub, err = nc.Subscribe(topic, cb)
	}
	if err != nil {
		d.cancel()
		return nil, fmt.Errorf("broker: subscribe %q: %w", topic, err)
	}
	if err := sub.SetPendingLimits(sc.pendingMsgs, sc.pendingBytes); err != nil {
		sub.Unsubscribe()
		d.cancel()
		return nil, fmt.Errorf("broker: subscribe %q: %w", topic, err)
	}
	// Wait for the server to register the interest, so that events
	// published once Subscribe returns reach it. While disconnected, the
	// client registers it again on reconnection.
	if err := nc.FlushTimeout(subscribeFlushTimeout); err != nil {
		n.cfg.logger.Debug("broker: subscription not confirmed by the server",
			"subscription", topic, "err", err.Error())
	}
	return &natsSub{owner: n, nc: nc, d: d, core: sub}, nil
}

// subscribeFlushTimeout bounds how long Subscribe waits for the server to
// confirm a core subscription.
const subscribeFlushTimeout = 5 * time.Second

type natsSub struct {
	owner *NATS
	nc    *nats.Conn
	d     *dispatcher
	core  *nats.Subscription
	cons  jetstream.ConsumeContext
	once  sync.Once
}

// Topic returns the subscribed topic pattern.
func (s *natsSub) Topic() string { return s.d.topic }

// Unsubscribe stops deliveries, waiting up to five seconds for the
// server to confirm. A plain subscription drops the events it has not
// handled yet and cancels a running handler's context. A durable one first
// handles the events it has already fetched, then keeps its place on the
// server.
func (s *natsSub) Unsubscribe() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.stop(ctx)
}

func (s *natsSub) stop(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.owner.mu.Lock()
		delete(s.owner.subs, s)
		s.owner.mu.Unlock()
		if s.core != nil {
			s.d.cancel()
			uerr := s.core.Unsubscribe()
			gone := errors.Is(uerr, nats.ErrConnectionClosed) ||
				errors.Is(uerr, nats.ErrBadSubscription)
			if uerr != nil && !gone {
				err = fmt.Errorf("broker: unsubscribe %q: %w", s.d.topic, uerr)
			}
		} else {
			// Events already fetched are handled and acknowledged rather
			// than left to wait for the ack wait on the server.
			s.cons.Drain()
			select {
			case <-s.cons.Closed():
			case <-ctx.Done():
				s.cons.Stop()
				err = fmt.Errorf("broker: unsubscribe %q: %w", s.d.topic, ctx.Err())
			}
			s.d.cancel()
		}
		// Once the server has seen the unsubscription, it sends nothing
		// more to it: a durable consumer's open pull request is dropped,
		// and new events wait in the stream for the next subscriber.
		if !s.nc.IsClosed() {
			_ = s.nc.FlushWithContext(ctx)
		}
	})
	return err
}

// logAttrs is a shorthand for structured log calls of subscriptions.
func (s *natsSub) logAttrs(level slog.Level, msg string, attrs ...slog.Attr) {
	s.d.logger.LogAttrs(context.Background(), level, msg,
		append([]slog.Attr{slog.String("subscription", s.d.topic)}, attrs...)...)
}
