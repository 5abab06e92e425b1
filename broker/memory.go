package broker

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/moatrpc/moat/security"
)

// Memory is a broker for a single process: events travel through memory
// in the same envelope, signed and verified the same way as over NATS when
// the broker has an identity ([WithIdentity]). Several services of one
// process share a bus through [Memory.As], each publishing and verifying
// with its own identity. Nothing is stored: subscriptions sharing a
// [WithDurable] name share events as a queue group does, without storage
// or redelivery, and [WithPersistence] is ignored. A Memory is safe for
// concurrent use.
type Memory struct {
	bus    *memBus
	cfg    config
	chains *chainVerifier

	mu        sync.Mutex
	connected bool
	subs      map[*memSub]struct{}
}

// memBus routes events between the Memory handles that share it.
type memBus struct {
	mu   sync.RWMutex
	subs map[*memSub]struct{}
	next map[string]uint64 // round-robin position per queue group
	seq  uint64
}

// NewMemory returns an in-memory broker on a bus of its own. Options
// marked "NATS only" are ignored.
func NewMemory(opts ...Option) *Memory {
	bus := &memBus{subs: make(map[*memSub]struct{}), next: make(map[string]uint64)}
	return newMemory(bus, newConfig(opts))
}

func newMemory(bus *memBus, cfg config) *Memory {
	m := &Memory{bus: bus, cfg: cfg, subs: make(map[*memSub]struct{})}
	if cfg.src != nil && cfg.src.Current() != nil {
		m.chains = newChainVerifier(cfg.src)
	} else {
		m.cfg.src = nil
	}
	return m
}

// As returns a broker on the same bus as m that publishes and verifies
// with identity src and m's other options, for a second service in the
// same process. It starts disconnected.
func (m *Memory) As(src security.Source) *Memory {
	cfg := m.cfg
	cfg.src = src
	return newMemory(m.bus, cfg)
}

// String returns "memory".
func (m *Memory) String() string { return "memory" }

// Connect makes m ready to publish and subscribe; the options' errors are
// reported here.
func (m *Memory) Connect(ctx context.Context) error {
	if m.cfg.err != nil {
		return m.cfg.err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.connected = true
	return nil
}

// Disconnect ends m's subscriptions, waiting until ctx ends for running
// handlers to return.
func (m *Memory) Disconnect(ctx context.Context) error {
	m.mu.Lock()
	m.connected = false
	subs := make([]*memSub, 0, len(m.subs))
	for s := range m.subs {
		subs = append(subs, s)
	}
	m.mu.Unlock()

	for _, s := range subs {
		s.stop()
	}
	for _, s := range subs {
		select {
		case <-s.done:
		case <-ctx.Done():
			return fmt.Errorf("broker: disconnect: handlers still running: %w", ctx.Err())
		}
	}
	return nil
}

// Publish delivers msg to every matching subscription, and to one member
// of each matching queue group, waiting while a subscription's pending
// queue is full until ctx ends.
func (m *Memory) Publish(
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
	if !m.isConnected() {
		return ErrNotConnected
	}
	_, data, err := seal(m.cfg.src, topic, msg, m.cfg.now())
	if err != nil {
		return err
	}
	for _, s := range m.bus.route(topic) {
		select {
		case s.queue <- memEvent{subject: topic, data: data}:
		case <-s.stopped:
		case <-ctx.Done():
			return fmt.Errorf("broker: publish %q: subscriber queue full: %w", topic, ctx.Err())
		}
	}
	return nil
}

// Subscribe starts delivering topic's events to h.
func (m *Memory) Subscribe(topic string, h Handler, opts ...SubscribeOption) (Subscriber, error) {
	sc, err := subscribeSettings(topic, h, opts)
	if err != nil {
		return nil, err
	}
	maxAge := DefaultMaxAge
	if sc.durable != "" {
		maxAge = m.cfg.streamMaxAge
	}
	s := &memSub{
		owner:   m,
		d:       newDispatcher(&m.cfg, topic, h, sc, m.chains, maxAge),
		group:   sc.queue,
		queue:   make(chan memEvent, sc.pendingMsgs),
		stopped: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if sc.durable != "" {
		s.group = "durable:" + sc.durable
	}

	m.mu.Lock()
	if !m.connected {
		m.mu.Unlock()
		return nil, ErrNotConnected
	}
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	m.bus.add(s)
	go s.run()
	return s, nil
}

func (m *Memory) isConnected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.connected
}

func (b *memBus) add(s *memSub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	s.seq = b.seq
	b.subs[s] = struct{}{}
}

func (b *memBus) remove(s *memSub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, s)
}

// route returns the subscriptions an event on topic goes to: every
// matching one outside a queue group, and one per matching group, in
// turn.
func (b *memBus) route(topic string) []*memSub {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*memSub
	groups := make(map[string][]*memSub)
	for s := range b.subs {
		if !matchTopic(s.d.topic, topic) {
			continue
		}
		if s.group == "" {
			out = append(out, s)
			continue
		}
		key := s.d.topic + "\x00" + s.group
		groups[key] = append(groups[key], s)
	}
	for key, members := range groups {
		// Map order is random; sort by creation for a fair rotation.
		slices.SortFunc(members, func(a, b *memSub) int { return cmp.Compare(a.seq, b.seq) })
		n := b.next[key]
		b.next[key] = n + 1
		out = append(out, members[n%uint64(len(members))])
	}
	return out
}

type memEvent struct {
	subject string
	data    []byte
}

type memSub struct {
	seq     uint64
	owner   *Memory
	d       *dispatcher
	group   string
	queue   chan memEvent
	once    sync.Once
	stopped chan struct{}
	done    chan struct{}
}

func (s *memSub) run() {
	defer close(s.done)
	for {
		select {
		case <-s.stopped:
			return
		case ev := <-s.queue:
			s.d.deliver(ev.subject, ev.data, delivery{count: 1})
		}
	}
}

func (s *memSub) stop() {
	s.once.Do(func() {
		s.owner.bus.remove(s)
		s.owner.mu.Lock()
		delete(s.owner.subs, s)
		s.owner.mu.Unlock()
		close(s.stopped)
		s.d.cancel()
	})
}

// Topic returns the subscribed topic pattern.
func (s *memSub) Topic() string { return s.d.topic }

// Unsubscribe stops deliveries; pending events are dropped and a running
// handler's context is cancelled. It does not wait for that handler, so
// that a handler may unsubscribe its own subscription; Disconnect waits.
func (s *memSub) Unsubscribe() error {
	s.stop()
	return nil
}
