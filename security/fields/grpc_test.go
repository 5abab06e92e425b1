package fields_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

// echoServer serves moat.fieldstest.v1.EchoService and remembers the
// last messages its handlers saw.
type echoServer struct {
	mu   sync.Mutex
	seen []proto.Message
	// reply, when set, replaces the echoed message.
	reply proto.Message
}

func (e *echoServer) saw(m proto.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen = append(e.seen, proto.Clone(m))
}

func (e *echoServer) last() []proto.Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]proto.Message(nil), e.seen...)
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "moat.fieldstest.v1.EchoService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: unaryHandler("Echo", func() proto.Message { return &testpb.Envelope{} })},
		{MethodName: "Ping", Handler: unaryHandler("Ping", func() proto.Message { return &testpb.Plain{} })},
	},
	Streams: []grpc.StreamDesc{{
		StreamName: "Chat", ServerStreams: true, ClientStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			e := srv.(*echoServer)
			for {
				m := &testpb.Envelope{}
				if err := ss.RecvMsg(m); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				e.saw(m)
				if err := ss.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

func unaryHandler(name string, newMsg func() proto.Message) func(any, context.Context,
	func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error,
		ic grpc.UnaryServerInterceptor) (any, error) {
		in := newMsg()
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(_ context.Context, req any) (any, error) {
			e := srv.(*echoServer)
			e.saw(req.(proto.Message))
			if e.reply != nil {
				return e.reply, nil
			}
			return req, nil
		}
		if ic == nil {
			return h(ctx, in)
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv,
			FullMethod: "/moat.fieldstest.v1.EchoService/" + name}, h)
	}
}

// testPeer is the identity test servers put in each call's context, as
// moat's servers do from the client certificate.
var testPeer = spiffeid.RequireFromString("spiffe://moat.test/svc/caller")

func peerUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
	h grpc.UnaryHandler) (any, error) {
	return h(security.ContextWithPeer(ctx, testPeer), req)
}

func peerStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo,
	h grpc.StreamHandler) error {
	return h(srv, &ctxStream{ServerStream: ss, ctx: security.ContextWithPeer(ss.Context(), testPeer)})
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

type serverConfig struct {
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor
	reply  proto.Message
}

// startEcho serves on a loopback port until the test ends and returns a
// client connection with the given dial options.
func startEcho(t *testing.T, sc serverConfig, dial ...grpc.DialOption) (*echoServer, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	impl := &echoServer{reply: sc.reply}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{peerUnary}, sc.unary...)...),
		grpc.ChainStreamInterceptor(append([]grpc.StreamServerInterceptor{peerStream}, sc.stream...)...),
	)
	srv.RegisterService(&echoDesc, impl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	dial = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dial...)
	cc, err := grpc.NewClient(lis.Addr().String(), dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
		<-done
	})
	return impl, cc
}

func echo(ctx context.Context, cc *grpc.ClientConn, in *testpb.Envelope) (*testpb.Envelope, error) {
	out := &testpb.Envelope{}
	err := cc.Invoke(ctx, "/moat.fieldstest.v1.EchoService/Echo", in, out)
	return out, err
}

func ping(ctx context.Context, cc *grpc.ClientConn, in *testpb.Plain) (*testpb.Plain, error) {
	out := &testpb.Plain{}
	err := cc.Invoke(ctx, "/moat.fieldstest.v1.EchoService/Ping", in, out)
	return out, err
}

func chat(ctx context.Context, cc *grpc.ClientConn) (grpc.ClientStream, error) {
	return cc.NewStream(ctx, &echoDesc.Streams[0], "/moat.fieldstest.v1.EchoService/Chat")
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
