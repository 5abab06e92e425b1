package rpc

import (
	"context"
	"log/slog"

	"github.com/moatrpc/moat/security"
)

// auditHook returns the service's audit sink: every event is counted in
// the metrics, logged, and passed to the user's hook.
func (s *Service) auditHook(user security.AuditHook) security.AuditHook {
	return func(ev security.Event) {
		s.metrics.audit(ev)
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
		if user != nil {
			user(ev)
		}
	}
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
