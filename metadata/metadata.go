// Package metadata carries go-micro style call metadata: string pairs a
// caller attaches to a call and a handler reads, sent as gRPC metadata.
//
// A caller sets the metadata of its next calls with [NewContext] (or
// [Set]); a handler reads what its caller sent with [FromContext].
// Metadata a handler received is never sent on by itself: calls a handler
// makes carry only what it put in its outgoing context. This differs from
// go-micro, where one context key serves both ways and whatever arrived
// travels on to every service called next, tokens included.
//
// A handler can answer with metadata of its own ([SetResponse]), which the
// caller collects with [WithResponse]. The interceptors of this package
// move metadata between contexts and the wire; rpc.WithContextMetadata
// installs them on a service.
//
// Values under sensitive keys ([IsSensitive]: authorization, cookies,
// anything naming a token, secret or password) print as [RedactedValue]
// through [Metadata.String] and [Metadata.LogValue], so logging a
// Metadata never shows them. The package itself logs nothing.
package metadata

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Metadata is a set of string pairs. Keys are case-insensitive and travel
// in lower case, as gRPC sends them.
type Metadata map[string]string

// Get returns the value of key, whatever its case.
func (md Metadata) Get(key string) (string, bool) {
	if v, ok := md[key]; ok {
		return v, true
	}
	lower := strings.ToLower(key)
	for k, v := range md {
		if strings.ToLower(k) == lower {
			return v, true
		}
	}
	return "", false
}

// Copy returns a copy of md with lower-case keys.
func (md Metadata) Copy() Metadata {
	out := make(Metadata, len(md))
	for k, v := range md {
		out[strings.ToLower(k)] = v
	}
	return out
}

// RedactedValue replaces sensitive values when metadata is printed.
const RedactedValue = "[REDACTED]"

// Redacted returns a copy of md in which the values of sensitive keys are
// replaced by [RedactedValue].
func (md Metadata) Redacted() Metadata {
	out := make(Metadata, len(md))
	for k, v := range md {
		if IsSensitive(k) {
			v = RedactedValue
		}
		out[k] = v
	}
	return out
}

// String formats md with sensitive values redacted, keys sorted, so that
// fmt's verbs never print a secret by accident.
func (md Metadata) String() string {
	r := md.Redacted()
	var b strings.Builder
	b.WriteString("map[")
	for i, k := range slices.Sorted(maps.Keys(r)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%s", k, r[k])
	}
	b.WriteByte(']')
	return b.String()
}

// LogValue makes slog print md as a group with sensitive values redacted.
func (md Metadata) LogValue() slog.Value {
	r := md.Redacted()
	attrs := make([]slog.Attr, 0, len(r))
	for _, k := range slices.Sorted(maps.Keys(r)) {
		attrs = append(attrs, slog.String(k, r[k]))
	}
	return slog.GroupValue(attrs...)
}

// sensitiveParts are substrings that make a key sensitive.
var sensitiveParts = []string{
	"authorization", "cookie", "token", "secret", "password", "passwd",
	"apikey", "api-key", "api_key", "credential", "session",
}

// IsSensitive reports whether values under key must never be logged:
// authorization headers, cookies, and any key naming a token, secret,
// password, API key, credential or session.
func IsSensitive(key string) bool {
	k := strings.ToLower(key)
	for _, p := range sensitiveParts {
		if strings.Contains(k, p) {
			return true
		}
	}
	return false
}

type (
	incomingKey struct{}
	outgoingKey struct{}
	sentKey     struct{}
	serverSink  struct{}
	clientSink  struct{}
)

// NewContext returns a copy of ctx whose calls carry md, replacing any
// metadata set before on ctx. A nil or empty md sends nothing.
func NewContext(ctx context.Context, md Metadata) context.Context {
	return context.WithValue(ctx, outgoingKey{}, md.Copy())
}

// MergeContext returns a copy of ctx whose calls carry the outgoing
// metadata of ctx and md; on a key in both, md wins when overwrite is set.
func MergeContext(ctx context.Context, md Metadata, overwrite bool) context.Context {
	out, _ := OutgoingFromContext(ctx)
	if out == nil {
		out = Metadata{}
	}
	for k, v := range md {
		k = strings.ToLower(k)
		if _, ok := out[k]; ok && !overwrite {
			continue
		}
		out[k] = v
	}
	return context.WithValue(ctx, outgoingKey{}, out)
}

// Set returns a copy of ctx whose calls carry key=value in addition to
// the outgoing metadata ctx already had.
func Set(ctx context.Context, key, value string) context.Context {
	return MergeContext(ctx, Metadata{key: value}, true)
}

// OutgoingFromContext returns a copy of the metadata calls made with ctx
// will carry.
func OutgoingFromContext(ctx context.Context) (Metadata, bool) {
	md, ok := ctx.Value(outgoingKey{}).(Metadata)
	if !ok {
		return nil, false
	}
	return md.Copy(), true
}

// FromContext returns a copy of the metadata the caller sent with the call
// a handler is serving, without gRPC's own keys (content-type, user-agent,
// :authority, grpc-*). It finds it in contexts prepared by this package's
// server interceptors and, failing that, in gRPC's incoming metadata.
func FromContext(ctx context.Context) (Metadata, bool) {
	if md, ok := ctx.Value(incomingKey{}).(Metadata); ok {
		return md.Copy(), true
	}
	return incomingFromGRPC(ctx)
}

// sink collects response metadata.
type sink struct {
	mu sync.Mutex
	md Metadata
}

func (s *sink) merge(md Metadata) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range md {
		s.md[strings.ToLower(k)] = v
	}
}

func (s *sink) take() Metadata {
	s.mu.Lock()
	defer s.mu.Unlock()
	md := s.md
	s.md = Metadata{}
	return md
}

// SetResponse adds md to the metadata sent back to the caller with the
// response of the call ctx serves. It fails when the service does not run
// this package's server interceptors.
func SetResponse(ctx context.Context, md Metadata) error {
	s, ok := ctx.Value(serverSink{}).(*sink)
	if !ok {
		return fmt.Errorf("metadata: no call to answer in this context: install the server " +
			"interceptors (rpc.WithContextMetadata)")
	}
	if err := validate(md); err != nil {
		return err
	}
	s.merge(md)
	return nil
}

// WithResponse returns a context for one call and the metadata the
// server sends back on it, filled in when the call has returned (for a
// stream, when it has ended). It needs this package's client interceptors
// on the connection.
func WithResponse(ctx context.Context) (context.Context, Metadata) {
	md := Metadata{}
	return context.WithValue(ctx, clientSink{}, md), md
}
