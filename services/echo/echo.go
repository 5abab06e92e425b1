// Package echo is the example echo service: it answers with what it was
// sent, with one RPC of each kind (unary, server streaming, client
// streaming, bidirectional). Tests and tools use it to exercise every
// shape of call.
package echo

import (
	"context"
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	echov1 "github.com/moatrpc/moat/proto/moat/example/echo/v1"
)

// MaxRepeat bounds the copies Repeat sends.
const MaxRepeat = 1000

// Handler implements echov1.EchoServiceHandler; register it with
// echov1.RegisterEchoServiceHandler. It keeps no state and is safe for
// concurrent use.
type Handler struct{}

// Echo returns the request's message and secret.
func (Handler) Echo(_ context.Context, req *echov1.EchoRequest, rsp *echov1.EchoResponse) error {
	rsp.Message, rsp.Secret = req.GetMessage(), req.GetSecret()
	return nil
}

// Repeat streams the message back count times.
func (Handler) Repeat(ctx context.Context, req *echov1.RepeatRequest,
	stream grpc.ServerStreamingServer[echov1.RepeatResponse]) error {
	if req.GetCount() < 0 || req.GetCount() > MaxRepeat {
		return status.Errorf(codes.InvalidArgument, "echo: count must be between 0 and %d", MaxRepeat)
	}
	for i := range req.GetCount() {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		if err := stream.Send(&echov1.RepeatResponse{Message: req.GetMessage(), Index: i}); err != nil {
			return err
		}
	}
	return nil
}

// Collect joins the parts it receives with spaces.
func (Handler) Collect(_ context.Context,
	stream grpc.ClientStreamingServer[echov1.CollectRequest, echov1.CollectResponse]) error {
	var parts []string
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&echov1.CollectResponse{
				Message: strings.Join(parts, " "), Parts: int32(len(parts)),
			})
		}
		if err != nil {
			return err
		}
		parts = append(parts, m.GetPart())
	}
}

// Chat answers each line with the same line.
func (Handler) Chat(_ context.Context,
	stream grpc.BidiStreamingServer[echov1.ChatRequest, echov1.ChatResponse]) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&echov1.ChatResponse{Line: m.GetLine()}); err != nil {
			return err
		}
	}
}
