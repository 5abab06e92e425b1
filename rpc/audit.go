package rpc

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/moatrpc/moat/security"
)

// auditHook returns the service's audit sink: every event is counted in
// the metrics, logged, and passed to the user's hook.
func (s *Service) auditHook(user security.AuditHook) security.AuditHook {
	limit := &logLimiter{}
	return func(ev security.Event) {
		s.metrics.audit(ev)
		if user != nil {
			user(ev)
		}
		// Unauthenticated peers can cause refusals at will: their log lines
		// are limited, while hooks and metrics see every one.
		if ev.Kind == security.EventHandshakeRefused {
			ok, dropped := limit.allow(time.Now())
			if !ok {
				return
			}
			if dropped > 0 {
				s.logger.Warn("rpc: refused handshakes not logged (rate limit)", "count", dropped)
			}
		}
		level := slog.LevelWarn
		if ev.Kind == security.EventRotated || ev.Kind == security.EventRevocationLoaded {
			level = slog.LevelInfo
		}
		attrs := []slog.Attr{slog.String("event", string(ev.Kind))}
		add := func(k, v string) {
			if v != "" {
				attrs = append(attrs, slog.String(k, v))
			}
		}
		add("reason", string(ev.Reason))
		add("peer", ev.Peer)
		add("remote", ev.Remote)
		add("method", ev.Method)
		add("subject", ev.Subject)
		if !ev.NotAfter.IsZero() {
			attrs = append(attrs, slog.Time("not_after", ev.NotAfter))
		}
		if ev.Err != nil {
			add("err", ev.Err.Error())
		}
		s.logger.LogAttrs(context.Background(), level, "rpc: audit", attrs...)
	}
}

// logLimiter lets through logRate lines a second and counts the rest.
type logLimiter struct {
	mu      sync.Mutex
	second  time.Time
	n       int
	dropped int
}

const logRate = 10

func (l *logLimiter) allow(now time.Time) (ok bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sec := now.Truncate(time.Second)
	if !sec.Equal(l.second) {
		l.second, l.n = sec, 0
	}
	l.n++
	if l.n > logRate {
		l.dropped++
		return false, 0
	}
	dropped, l.dropped = l.dropped, 0
	return true, dropped
}

func (s *Service) handshakeHook(side string) security.HandshakeHook {
	return func(ev security.HandshakeEvent) {
		s.metrics.handshake(ev)
		if s.opts.onHandshake != nil {
			s.opts.onHandshake(ev)
		}
		if ev.Err == nil {
			return
		}
		remote := ""
		if ev.Remote != nil {
			remote = ev.Remote.String()
		}
		s.opts.audit(security.Event{Kind: security.EventHandshakeRefused, Reason: ev.Reason,
			Peer: ev.Peer, Remote: remote, Subject: side, Err: ev.Err})
	}
}
