package broker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxRedeliveryDelay caps the growing delay before a failed durable event
// is delivered again.
const maxRedeliveryDelay = time.Minute

// pullExpiry bounds each pull request of a durable consumer; a missing
// heartbeat is detected after the same time.
const pullExpiry = 5 * time.Second

// subscribeDurable creates or resumes the durable consumer sc.durable on
// the stream of topic and consumes from it: a handler's nil acknowledges,
// its error asks for redelivery after a delay, and a refused event is
// terminated so that it is never delivered again.
func (n *NATS) subscribeDurable(
	nc *nats.Conn,
	js jetstream.JetStream,
	topic string,
	h Handler,
	sc subscribeConfig,
) (*natsSub, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.ensureStream(ctx, js, topic); err != nil {
		return nil, err
	}
	stream, _, _ := streamFor(topic)
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       sc.durable,
		FilterSubject: topic,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       sc.ackWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
		MaxAckPending: sc.pendingMsgs,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: durable consumer %q on stream %s: %w",
			sc.durable, stream, err)
	}

	d := newDispatcher(&n.cfg, topic, h, sc, n.chains, n.cfg.streamMaxAge)
	s := &natsSub{owner: n, nc: nc, d: d}
	handle := func(m jetstream.Msg) {
		dl := delivery{count: 1}
		if meta, err := m.Metadata(); err == nil {
			dl = delivery{seq: meta.Sequence.Stream, count: int(meta.NumDelivered)}
		}
		// Keep the server from redelivering the event while its handler
		// runs, however long it takes.
		stop := keepInProgress(m, sc.ackWait/2)
		out := d.deliver(m.Subject(), m.Data(), dl)
		stop()
		var err error
		switch out {
		case handled:
			err = m.Ack()
		case failed:
			err = m.NakWithDelay(redeliveryDelay(sc.redeliveryDelay, dl.count))
		case refused:
			err = m.Term()
		}
		if err != nil {
			s.logAttrs(slog.LevelWarn, "broker: acknowledgement not sent",
				slog.String("topic", m.Subject()), slog.String("err", err.Error()))
		}
	}
	s.cons, err = cons.Consume(handle,
		jetstream.PullMaxMessages(min(sc.pendingMsgs, 1000)),
		// Short pulls make the client notice within seconds a pull request
		// lost with a server restart, instead of after a minute.
		jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.logAttrs(slog.LevelDebug, "broker: durable consumer", slog.String("err", err.Error()))
		}),
	)
	if err != nil {
		d.cancel()
		return nil, fmt.Errorf("broker: consume %q as %q: %w", topic, sc.durable, err)
	}
	return s, nil
}

// keepInProgress tells the server every period that m is still being
// handled, until the returned stop is called.
func keepInProgress(m jetstream.Msg, every time.Duration) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		// A lost signal only risks a duplicate delivery.
		_ = m.InProgress()
		t.Reset(every)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// redeliveryDelay doubles base with each failed delivery, up to a minute.
func redeliveryDelay(base time.Duration, deliveries int) time.Duration {
	d := base
	for i := 1; i < deliveries && d < maxRedeliveryDelay; i++ {
		d *= 2
	}
	return min(d, maxRedeliveryDelay)
}
