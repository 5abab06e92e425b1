package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/moatrpc/moat/security"
)

// metrics are a service's Prometheus collectors, in a registry of its own.
// Label values are bounded: reasons and codes are fixed sets, peers are
// service names of the trust domain, methods are the registered ones.
type metrics struct {
	reg        *prometheus.Registry
	handshakes *prometheus.CounterVec
	rpcs       *prometheus.CounterVec
	events     *prometheus.CounterVec
}

func newMetrics(service string) *metrics {
	constLabels := prometheus.Labels{"service": service}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_handshakes_total", ConstLabels: constLabels,
			Help: "TLS handshakes by side, result (accepted or refused) and refusal reason.",
		}, []string{"side", "result", "reason"}),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_server_handled_total", ConstLabels: constLabels,
			Help: "RPCs completed by the server, by calling service, method and status code.",
		}, []string{"peer", "method", "code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_audit_events_total", ConstLabels: constLabels,
			Help: "Audit events (rotations, revocations, authorization denials...) by kind and reason.",
		}, []string{"kind", "reason"}),
	}
	m.reg.MustRegister(m.handshakes, m.rpcs, m.events,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchIdentity exports the seconds left before the current certificate
// expires, read at each scrape.
func (m *metrics) watchIdentity(src security.Source) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "moat_certificate_expiry_seconds",
		Help:        "Seconds until the workload certificate in use expires.",
		ConstLabels: prometheus.Labels{"service": src.Current().Service()},
	}, func() float64 { return time.Until(src.Current().Leaf().NotAfter).Seconds() }))
}

func (m *metrics) handshake(ev security.HandshakeEvent) {
	result := "accepted"
	if ev.Err != nil {
		result = "refused"
	}
	m.handshakes.WithLabelValues(ev.Side, result, string(ev.Reason)).Inc()
}

func (m *metrics) audit(ev security.Event) {
	if ev.Kind == security.EventHandshakeRefused {
		return // counted by handshake
	}
	m.events.WithLabelValues(string(ev.Kind), string(ev.Reason)).Inc()
}

func peerLabel(ctx context.Context) string {
	id, ok := security.PeerFromContext(ctx)
	if !ok {
		return "unknown"
	}
	if svc, err := security.ServiceOf(id); err == nil {
		return svc
	}
	return "unknown"
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	m.rpcs.WithLabelValues(peerLabel(ctx), info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.rpcs.WithLabelValues(peerLabel(ss.Context()), info.FullMethod, status.Code(err).String()).Inc()
	return err
}

// Metrics returns the service's Prometheus registry, to serve it another
// way or to add collectors.
func (s *Service) Metrics() *prometheus.Registry { return s.metrics.reg }

// serveMetrics serves /metrics over mutual TLS on addr until Stop.
func (s *Service) serveMetrics(addr string) (stop func(context.Context) error, bound net.Addr, err error) {
	var tlsOpts []security.TLSOption
	if s.opts.revocation != nil {
		tlsOpts = append(tlsOpts, security.WithRevocation(s.opts.revocation))
	}
	conf, err := security.ServerTLSConfig(s.opts.identity, tlsOpts...)
	if err != nil {
		return nil, nil, err
	}
	// Scrapers speak HTTP/1.1 as often as h2.
	conf.NextProtos = []string{"h2", "http/1.1"}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("rpc: metrics listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         conf,
		ReadHeaderTimeout: 10 * time.Second,
		// net/http would print refused TLS handshakes to stderr.
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, conf)) }()
	return func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}, ln.Addr(), nil
}
