package metadata

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	gmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// reserved reports whether gRPC or HTTP/2 own key: such keys are neither
// read into Metadata nor sent from it.
func reserved(key string) bool {
	switch key {
	case "content-type", "user-agent", "te", "authority":
		return true
	}
	return strings.HasPrefix(key, ":") || strings.HasPrefix(key, "grpc-")
}

// validKey reports whether key may travel as a gRPC metadata key.
func validKey(key string) bool {
	if key == "" {
		return false
	}
	for _, r := range key {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}

// validate checks that md can travel as gRPC metadata. Errors name the
// key, never the value.
func validate(md Metadata) error {
	for k := range md {
		lower := strings.ToLower(k)
		if !validKey(lower) {
			return fmt.Errorf("metadata: key %q is not a valid gRPC metadata key "+
				"(letters, digits, '-', '_', '.')", k)
		}
		if reserved(lower) {
			return fmt.Errorf("metadata: key %q is reserved by gRPC", k)
		}
	}
	return nil
}

// fromGRPC flattens gRPC metadata to one value per key, the first, and
// drops gRPC's own keys.
func fromGRPC(mds ...gmd.MD) Metadata {
	out := Metadata{}
	for _, md := range mds {
		for k, vs := range md {
			k = strings.ToLower(k)
			if reserved(k) || len(vs) == 0 {
				continue
			}
			if _, seen := out[k]; !seen {
				out[k] = vs[0]
			}
		}
	}
	return out
}

func toGRPC(md Metadata) gmd.MD {
	out := gmd.MD{}
	for k, v := range md {
		out.Set(strings.ToLower(k), v)
	}
	return out
}

func incomingFromGRPC(ctx context.Context) (Metadata, bool) {
	md, ok := gmd.FromIncomingContext(ctx)
	if !ok {
		return nil, false
	}
	return fromGRPC(md), true
}

// serverContext prepares a handler's context: the caller's metadata to
// read, no outgoing metadata, and a sink for response metadata.
func serverContext(ctx context.Context) (context.Context, *sink) {
	in, _ := incomingFromGRPC(ctx)
	if in == nil {
		in = Metadata{}
	}
	s := &sink{md: Metadata{}}
	ctx = context.WithValue(ctx, incomingKey{}, in)
	ctx = context.WithValue(ctx, outgoingKey{}, Metadata(nil))
	ctx = context.WithValue(ctx, serverSink{}, s)
	return ctx, s
}

// outgoing returns ctx with its Metadata appended to gRPC's outgoing
// metadata, once: a context already prepared is returned as it is.
func outgoing(ctx context.Context) (context.Context, error) {
	if ctx.Value(sentKey{}) != nil {
		return ctx, nil
	}
	md, _ := ctx.Value(outgoingKey{}).(Metadata)
	if len(md) == 0 {
		return ctx, nil
	}
	if err := validate(md); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	kv := make([]string, 0, 2*len(md))
	for k, v := range md {
		kv = append(kv, strings.ToLower(k), v)
	}
	ctx = gmd.AppendToOutgoingContext(ctx, kv...)
	return context.WithValue(ctx, sentKey{}, true), nil
}

// UnaryServerInterceptor makes the caller's metadata readable with
// [FromContext] and sends what the handler gave [SetResponse] back as
// trailers.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, s := serverContext(ctx)
		resp, err := h(ctx, req)
		if md := s.take(); len(md) > 0 {
			// Fails only outside a gRPC server context.
			_ = grpc.SetTrailer(ctx, toGRPC(md))
		}
		return resp, err
	}
}

// StreamServerInterceptor is [UnaryServerInterceptor] for streams.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, s := serverContext(ss.Context())
		err := h(srv, &serverStream{ServerStream: ss, ctx: ctx})
		if md := s.take(); len(md) > 0 {
			ss.SetTrailer(toGRPC(md))
		}
		return err
	}
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

// UnaryClientInterceptor sends the metadata set with [NewContext] and
// fills the map of [WithResponse] with what the server sent back.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, err := outgoing(ctx)
		if err != nil {
			return err
		}
		resp, ok := ctx.Value(clientSink{}).(Metadata)
		if !ok {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		var header, trailer gmd.MD
		opts = append(opts, grpc.Header(&header), grpc.Trailer(&trailer))
		err = invoker(ctx, method, req, reply, cc, opts...)
		for k, v := range fromGRPC(trailer, header) {
			resp[k] = v
		}
		return err
	}
}

// StreamClientInterceptor is [UnaryClientInterceptor] for streams; the
// response metadata is filled in when the stream ends.
func StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
		streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, err := outgoing(ctx)
		if err != nil {
			return nil, err
		}
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		resp, ok := ctx.Value(clientSink{}).(Metadata)
		if !ok {
			return cs, nil
		}
		return &clientStream{ClientStream: cs, resp: resp}, nil
	}
}

type clientStream struct {
	grpc.ClientStream
	resp Metadata
}

func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		// The stream has ended: header and trailer are final.
		header, _ := s.ClientStream.Header()
		for k, v := range fromGRPC(s.ClientStream.Trailer(), header) {
			s.resp[k] = v
		}
	}
	return err
}
