package broker

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// outcome is what became of one delivery.
type outcome int

const (
	handled outcome = iota // the handler returned nil
	failed                 // the handler returned an error
	refused                // the event failed a check; the handler never saw it
)

// dispatcher runs a subscription's checks and handler; every broker
// implementation delivers through one.
type dispatcher struct {
	topic  string
	cfg    subscribeConfig
	h      Handler
	check  *checker
	logger *slog.Logger
	hook   func(RefusedEvent)
	ctx    context.Context
	cancel context.CancelFunc
}

func newDispatcher(
	c *config,
	topic string,
	h Handler,
	sc subscribeConfig,
	chains *chainVerifier,
	maxAge time.Duration,
) *dispatcher {
	if sc.maxAge > 0 {
		maxAge = sc.maxAge
	}
	ck := &checker{
		chains: chains,
		now:    c.now,
		skew:   c.skew,
		maxAge: maxAge,
		replay: newReplayCache(c.replaySize),
	}
	if len(sc.publishers) > 0 {
		ck.allow = make(map[string]bool, len(sc.publishers))
		for _, p := range sc.publishers {
			ck.allow[p] = true
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &dispatcher{
		topic: topic, cfg: sc, h: h, check: ck,
		logger: c.logger, hook: c.onRefused, ctx: ctx, cancel: cancel,
	}
}

// deliver checks one received event and, when it passes, runs the
// handler with the event's metadata in its context.
func (d *dispatcher) deliver(subject string, data []byte, dl delivery) outcome {
	e, err := parseEnvelope(data)
	if err != nil {
		r := &RefusalError{Reason: ReasonMalformed, Detail: "envelope does not parse", Err: err}
		if errors.Is(err, errNoEnvelope) {
			r = refuse(ReasonUnsigned, "data is not a moat event envelope")
		}
		d.refuse(subject, nil, r)
		return refused
	}
	ev, r := d.check.check(subject, e, dl)
	if r != nil {
		d.refuse(subject, e, r)
		return refused
	}

	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.handlerTimeout)
	defer cancel()
	ctx = ContextWithEvent(ctx, ev)
	if err := d.h(ctx, &Message{Header: e.header, Body: e.body}); err != nil {
		d.logger.LogAttrs(ctx, slog.LevelWarn, "broker: handler failed",
			slog.String("topic", subject), slog.String("subscription", d.topic),
			slog.String("id", ev.ID), slog.Int("delivery", ev.Delivery),
			slog.String("err", err.Error()))
		return failed
	}
	return handled
}

func (d *dispatcher) refuse(subject string, e *envelope, r *RefusalError) {
	ev := RefusedEvent{
		Topic:        subject,
		Subscription: d.topic,
		Queue:        d.cfg.queue,
		Durable:      d.cfg.durable,
		Reason:       r.Reason,
		Err:          r,
	}
	if e != nil {
		ev.Publisher = truncate(e.publisher, 256)
		ev.MessageID = e.idHex()
	}
	d.logger.LogAttrs(d.ctx, slog.LevelWarn, "broker: event refused",
		slog.String("topic", subject), slog.String("subscription", d.topic),
		slog.String("reason", string(r.Reason)), slog.String("publisher", ev.Publisher),
		slog.String("id", ev.MessageID), slog.String("err", r.Error()))
	if d.hook != nil {
		d.hook(ev)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
