package fields

import (
	"context"
	"log/slog"
	"slices"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/moatrpc/moat/security"
)

// Log field keys added to those of go-grpc-middleware's logging package.
const (
	// PeerKey holds the SPIFFE ID of the other side of the call.
	PeerKey = "peer.id"
	// MetadataKey holds the call's metadata, with sensitive values
	// redacted.
	MetadataKey = "grpc.metadata"
)

// LogOption configures [NewCallLogger].
type LogOption interface{ applyLog(*logOptions) }

type logOptionFunc func(*logOptions)

func (f logOptionFunc) applyLog(o *logOptions) { f(o) }

type logOptions struct {
	payloads bool
	metadata bool
	extra    []logging.Option
}

// WithPayloads logs each message sent and received, in redacted form
// (see [Redact]), encoded as protobuf JSON. It is verbose: use it to debug.
func WithPayloads() LogOption {
	return logOptionFunc(func(o *logOptions) { o.payloads = true })
}

// WithoutMetadata stops logging the call's metadata. By default metadata
// is logged with sensitive values redacted (see [SensitiveMetadataKey]).
func WithoutMetadata() LogOption {
	return logOptionFunc(func(o *logOptions) { o.metadata = false })
}

// WithLoggingOptions passes options to go-grpc-middleware's logging
// interceptors, for example logging.WithLevels. Options that set the
// fields taken from the context are replaced by the CallLogger's own.
func WithLoggingOptions(opts ...logging.Option) LogOption {
	return logOptionFunc(func(o *logOptions) { o.extra = append(o.extra, opts...) })
}

// CallLogger builds gRPC interceptors that log each call to a
// *slog.Logger: method, peer identity, code, latency, redacted metadata
// and, with [WithPayloads], redacted payloads. No field marked PII, SECRET
// or debug_redact ever reaches the logger in clear. A CallLogger is safe
// for concurrent use.
type CallLogger struct {
	logger logging.Logger
	opts   []logging.Option
	meta   bool
}

// NewCallLogger returns a CallLogger writing to l; a nil l discards.
func NewCallLogger(l *slog.Logger, opts ...LogOption) *CallLogger {
	o := logOptions{metadata: true}
	for _, opt := range opts {
		opt.applyLog(&o)
	}
	events := []logging.LoggableEvent{logging.FinishCall}
	if o.payloads {
		events = append(events, logging.PayloadReceived, logging.PayloadSent)
	}
	c := &CallLogger{logger: RedactingLogger(l), meta: o.metadata}
	c.opts = append([]logging.Option{logging.WithLogOnEvents(events...)}, o.extra...)
	c.opts = append(c.opts, logging.WithFieldsFromContextAndCallMeta(c.fields))
	return c
}

// RedactingLogger adapts l to go-grpc-middleware's logging.Logger,
// redacting every protobuf message among the fields (see [Redact]) and
// encoding it as protobuf JSON. A nil l discards.
func RedactingLogger(l *slog.Logger) logging.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, kv ...any) {
		level := slog.Level(lvl)
		if !l.Enabled(ctx, level) {
			return
		}
		attrs := make([]slog.Attr, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			k, _ := kv[i].(string)
			v := kv[i+1]
			if m, ok := v.(proto.Message); ok {
				v = payload{m}
			}
			attrs = append(attrs, slog.Any(k, v))
		}
		l.LogAttrs(ctx, level, msg, attrs...)
	})
}

// payload defers redaction and encoding until a handler writes the record.
type payload struct{ m proto.Message }

// LogValue returns the redacted message as protobuf JSON.
func (p payload) LogValue() slog.Value {
	b, err := protojson.Marshal(Redact(p.m))
	if err != nil {
		name := p.m.ProtoReflect().Descriptor().FullName()
		return slog.StringValue("[unprintable " + string(name) + "]")
	}
	return slog.StringValue(string(b))
}

// mdValue defers formatting of metadata until a handler writes the record.
type mdValue struct{ md metadata.MD }

// LogValue returns the redacted metadata as a group, keys sorted. The
// metadata is grpc-go's copy, made for this line (FromIncomingContext and
// FromOutgoingContext copy), so its values are used as they are; sensitive
// ones are replaced here, without a second copy of the whole.
func (v mdValue) LogValue() slog.Value {
	keys := make([]string, 0, len(v.md))
	for k := range v.md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		vs := v.md[k]
		if SensitiveMetadataKey(k) {
			vs = slices.Repeat([]string{Redacted}, len(vs))
		}
		if len(vs) == 1 {
			attrs = append(attrs, slog.String(k, vs[0]))
			continue
		}
		attrs = append(attrs, slog.Any(k, vs))
	}
	return slog.GroupValue(attrs...)
}

type peerSlot struct{}

// fields adds the peer identity and the metadata to every line.
func (c *CallLogger) fields(ctx context.Context, call interceptors.CallMeta) logging.Fields {
	var f logging.Fields
	if id, ok := peerID(ctx, call.IsClient); ok {
		f = append(f, PeerKey, id)
	}
	if c.meta {
		md, ok := metadata.FromIncomingContext(ctx)
		if call.IsClient {
			md, ok = metadata.FromOutgoingContext(ctx)
		}
		if ok && len(md) > 0 {
			f = append(f, MetadataKey, mdValue{md})
		}
	}
	return f
}

// peerID returns the SPIFFE ID of the other side: the caller's on a
// server (from moat's context, else from the connection), the server's on
// a client once a unary call has ended.
func peerID(ctx context.Context, client bool) (string, bool) {
	var p *peer.Peer
	if client {
		p, _ = ctx.Value(peerSlot{}).(*peer.Peer)
	} else if id, ok := security.PeerFromContext(ctx); ok {
		return id.String(), true
	} else {
		p, _ = peer.FromContext(ctx)
	}
	if p == nil || p.AuthInfo == nil {
		return "", false
	}
	id, err := security.PeerFromAuthInfo(p.AuthInfo)
	return id.String(), err == nil
}

// UnaryServerInterceptor logs each unary call a server handles. Put it
// after the interceptor that puts the caller's identity in the context.
func (c *CallLogger) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return logging.UnaryServerInterceptor(c.logger, c.opts...)
}

// StreamServerInterceptor logs each streaming call a server handles.
func (c *CallLogger) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return logging.StreamServerInterceptor(c.logger, c.opts...)
}

// UnaryClientInterceptor logs each unary call a client makes, with the
// identity the server presented.
func (c *CallLogger) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	inner := logging.UnaryClientInterceptor(c.logger, c.opts...)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		// grpc-go fills p when the call ends, before the line is logged.
		p := &peer.Peer{}
		ctx = context.WithValue(ctx, peerSlot{}, p)
		opts = append(opts[:len(opts):len(opts)], grpc.Peer(p))
		return inner(ctx, method, req, reply, cc, invoker, opts...)
	}
}

// StreamClientInterceptor logs each streaming call a client makes.
func (c *CallLogger) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return logging.StreamClientInterceptor(c.logger, c.opts...)
}
