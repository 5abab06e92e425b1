package fields

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// direction says which way a message travels, for the status code of a
// failure.
type direction int

const (
	// outgoing: sealing a request (client) or a response (server).
	outgoing direction = iota
	// inRequest: a server unsealing a request.
	inRequest
	// inResponse: a client unsealing a response.
	inResponse
)

// statusError turns a Sealer error into a gRPC status error:
//
//   - codes.InvalidArgument: a server received a request field that is
//     malformed, cannot be decrypted, or arrived in clear when sealing is
//     required;
//   - codes.DataLoss: the same for a response field received by a client;
//   - codes.FailedPrecondition: keysets are out of step (unknown key id,
//     missing keyset), whichever side;
//   - codes.Internal: a field is marked SECRET on a type that cannot hold
//     ciphertext, or encryption failed.
//
// The status message is the Error's, which names the message type, the
// field number and the keyset, never a value.
func statusError(err error, d direction) error {
	var fe *Error
	if !errors.As(err, &fe) {
		return status.Error(codes.Internal, "fields: cannot process sensitive fields")
	}
	code := codes.Internal
	switch fe.Kind {
	case KindMalformed, KindCannotDecrypt, KindNotSealed:
		code = codes.InvalidArgument
		if d == inResponse {
			code = codes.DataLoss
		}
	case KindUnknownKey, KindMissingKeyset:
		code = codes.FailedPrecondition
	}
	return status.Error(code, fe.Error())
}

// sealCopy returns v itself when its type has no SECRET field, or a
// sealed copy, so that a caller's or a handler's message is never changed.
func (s *Sealer) sealCopy(c *planCache, v any) (any, error) {
	msg, ok := v.(proto.Message)
	if !ok {
		return v, nil
	}
	p := c.get(msg.ProtoReflect().Descriptor())
	if !p.sealing() {
		return v, nil
	}
	cp := proto.Clone(msg)
	if err := s.seal(cp.ProtoReflect(), p); err != nil {
		return nil, statusError(err, outgoing)
	}
	return cp, nil
}

func (s *Sealer) unsealAny(c *planCache, v any, d direction) error {
	msg, ok := v.(proto.Message)
	if !ok {
		return nil
	}
	m := msg.ProtoReflect()
	if err := s.unseal(m, c.get(m.Descriptor())); err != nil {
		return statusError(err, d)
	}
	return nil
}

// UnaryServerInterceptor unseals each request before the handler runs and
// seals a copy of each response. A failure ends the call with a status
// error (see the package documentation for codes); the handler does not run
// for a request that cannot be unsealed.
func (s *Sealer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	var reqs, resps planCache
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler) (any, error) {
		if err := s.unsealAny(&reqs, req, inRequest); err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		if err != nil || resp == nil {
			return resp, err
		}
		return s.sealCopy(&resps, resp)
	}
}

// StreamServerInterceptor unseals each message the server receives and
// seals a copy of each message it sends.
func (s *Sealer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo,
		handler grpc.StreamHandler) error {
		return handler(srv, &serverStream{ServerStream: ss, s: s})
	}
}

type serverStream struct {
	grpc.ServerStream
	s           *Sealer
	sent, recvd planCache
}

func (w *serverStream) SendMsg(m any) error {
	c, err := w.s.sealCopy(&w.sent, m)
	if err != nil {
		return err
	}
	return w.ServerStream.SendMsg(c)
}

func (w *serverStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return w.s.unsealAny(&w.recvd, m, inRequest)
}

// UnaryClientInterceptor seals a copy of each request, leaving the
// caller's message unchanged, and unseals each response in place. A request
// that cannot be sealed is not sent.
func (s *Sealer) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	var reqs, replies planCache
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		sealed, err := s.sealCopy(&reqs, req)
		if err != nil {
			return err
		}
		if err := invoker(ctx, method, sealed, reply, cc, opts...); err != nil {
			return err
		}
		return s.unsealAny(&replies, reply, inResponse)
	}
}

// StreamClientInterceptor seals a copy of each message the client sends
// and unseals each message it receives.
func (s *Sealer) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
		streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &clientStream{ClientStream: cs, s: s}, nil
	}
}

type clientStream struct {
	grpc.ClientStream
	s           *Sealer
	sent, recvd planCache
}

func (w *clientStream) SendMsg(m any) error {
	c, err := w.s.sealCopy(&w.sent, m)
	if err != nil {
		return err
	}
	return w.ClientStream.SendMsg(c)
}

func (w *clientStream) RecvMsg(m any) error {
	if err := w.ClientStream.RecvMsg(m); err != nil {
		return err
	}
	return w.s.unsealAny(&w.recvd, m, inResponse)
}
