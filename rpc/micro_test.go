package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/moatrpc/moat/metadata"
	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	echov1 "github.com/moatrpc/moat/proto/moat/example/echo/v1"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/services"
	"github.com/moatrpc/moat/services/auth"
)

// startWith starts a service whose handlers register is given.
func startWith(t *testing.T, ca *security.CA, reg registry.Registry, name string,
	register func(*rpc.Service), opts ...rpc.Option) *rpc.Service {
	t.Helper()
	opts = append([]rpc.Option{rpc.WithIdentity(mustIdentity(t, ca, name)), rpc.WithRegistry(reg),
		rpc.WithoutSignalHandling(), rpc.WithKeyring(testKeyring(t))}, opts...)
	svc, err := rpc.NewService(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if register != nil {
		register(svc)
	}
	if err := svc.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop(context.Background()) })
	return svc
}

func TestGoMicroMethodPathOverMutualTLS(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	users, err := services.Users()
	if err != nil {
		t.Fatal(err)
	}
	startWith(t, ca, reg, "auth", func(s *rpc.Service) {
		authv1.RegisterAuthServiceHandler(s.Server(), auth.New(users))
	})
	conn, err := rpc.Dial(reg, mustIdentity(t, ca, "caller"), "auth", rpc.WithDialKeyring(testKeyring(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	tests := []struct {
		name    string
		path    string
		subtype string
	}{
		{name: "go-micro path", path: "/auth.AuthService/Login"},
		{name: "go-micro path, proto subtype", path: "/auth.AuthService/Login", subtype: "proto"},
		{name: "go-micro path, json subtype", path: "/auth.AuthService/Login", subtype: "json"},
		{name: "canonical path", path: authv1.AuthService_Login_FullMethodName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []grpc.CallOption
			if tt.subtype != "" {
				opts = append(opts, grpc.CallContentSubtype(tt.subtype))
			}
			req := &authv1.LoginRequest{Username: users[0].Username, Password: users[0].Password}
			resp := &authv1.LoginResponse{}
			if err := conn.Invoke(ctxT(t), tt.path, req, resp, opts...); err != nil {
				t.Fatal(err)
			}
			if resp.GetUserId() != users[0].UserID || resp.GetSessionToken() == "" {
				t.Fatalf("login answered %v", resp)
			}
			req.Password = "wrong"
			err := conn.Invoke(ctxT(t), tt.path, req, resp, opts...)
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
}

// echo is an EchoServiceHandler that records what its requests say.
type echo struct {
	mu   sync.Mutex
	seen []string
}

func (e *echo) note(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen = append(e.seen, s)
}

func (e *echo) Echo(ctx context.Context, req *echov1.EchoRequest, rsp *echov1.EchoResponse) error {
	if req.GetMessage() == "fail" {
		return status.Error(codes.FailedPrecondition, "echo: asked to fail")
	}
	md, _ := metadata.FromContext(ctx)
	rsp.Message = req.GetMessage()
	if v, ok := md.Get("x-tenant"); ok {
		rsp.Message += " for " + v
	}
	if id, ok := security.PeerFromContext(ctx); ok {
		e.note("peer " + id.String())
	}
	return nil
}

func (e *echo) Repeat(_ context.Context, req *echov1.RepeatRequest,
	stream grpc.ServerStreamingServer[echov1.RepeatResponse]) error {
	for i := range req.GetCount() {
		if err := stream.Send(&echov1.RepeatResponse{Message: req.GetMessage(), Index: i}); err != nil {
			return err
		}
	}
	return nil
}

func (e *echo) Collect(_ context.Context,
	stream grpc.ClientStreamingServer[echov1.CollectRequest, echov1.CollectResponse]) error {
	var parts []string
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&echov1.CollectResponse{
				Message: strings.Join(parts, " "), Parts: int32(len(parts))})
		}
		if err != nil {
			return err
		}
		parts = append(parts, m.GetPart())
	}
}

func (e *echo) Chat(_ context.Context, stream grpc.BidiStreamingServer[echov1.ChatRequest, echov1.ChatResponse]) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&echov1.ChatResponse{Line: strings.ToUpper(m.GetLine())}); err != nil {
			return err
		}
	}
}

// recorder is a handler wrapper that logs each call it sees.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) wrapper(tag string) rpc.HandlerWrapper {
	return func(next rpc.HandlerFunc) rpc.HandlerFunc {
		return func(ctx context.Context, req rpc.Request, rsp any) error {
			r.add(fmt.Sprintf("%s> %s %s %s stream=%v tenant=%s", tag, req.Service(), req.Endpoint(),
				req.Method(), req.Stream(), req.Header()["x-tenant"]))
			err := next(ctx, req, rsp)
			r.add(tag + "<")
			return err
		}
	}
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

func TestGeneratedMicroStubs(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	rec := &recorder{}
	h := &echo{}
	startWith(t, ca, reg, "echo", func(s *rpc.Service) {
		echov1.RegisterEchoServiceHandler(s.Server(), h, rec.wrapper("outer"), rec.wrapper("inner"))
	}, rpc.WithContextMetadata())
	caller := startWith(t, ca, reg, "caller", nil, rpc.WithContextMetadata())
	client := echov1.NewEchoService("echo", caller.Client())
	ctx := metadata.NewContext(ctxT(t), metadata.Metadata{"X-Tenant": "acme"})

	t.Run("unary", func(t *testing.T) {
		resp, err := client.Echo(ctx, &echov1.EchoRequest{Message: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetMessage() != "hi for acme" {
			t.Fatalf("echo answered %q", resp.GetMessage())
		}
		want := []string{
			"outer> echo EchoService.Echo /moat.example.echo.v1.EchoService/Echo stream=false tenant=acme",
			"inner> echo EchoService.Echo /moat.example.echo.v1.EchoService/Echo stream=false tenant=acme",
			"inner<", "outer<",
		}
		if got := rec.take(); !slices.Equal(got, want) {
			t.Fatalf("wrappers saw\n%q\nwant\n%q", got, want)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if !slices.Contains(h.seen, "peer spiffe://moat.test/svc/caller") {
			t.Fatalf("handler did not see the verified caller: %v", h.seen)
		}
	})
	t.Run("unary error keeps its code", func(t *testing.T) {
		_, err := client.Echo(ctx, &echov1.EchoRequest{Message: "fail"})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("err = %v", err)
		}
		rec.take()
	})
	t.Run("server stream", func(t *testing.T) {
		stream, err := client.Repeat(ctx, &echov1.RepeatRequest{Message: "x", Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		var got []int32
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.GetIndex())
		}
		if !slices.Equal(got, []int32{0, 1, 2}) {
			t.Fatalf("received %v", got)
		}
		if calls := rec.take(); len(calls) != 4 || !strings.Contains(calls[0], "EchoService.Repeat") ||
			!strings.Contains(calls[0], "stream=true") {
			t.Fatalf("wrappers saw %q", calls)
		}
	})
	t.Run("client stream", func(t *testing.T) {
		stream, err := client.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"a", "b", "c"} {
			if err := stream.Send(&echov1.CollectRequest{Part: p}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetMessage() != "a b c" || resp.GetParts() != 3 {
			t.Fatalf("collected %v", resp)
		}
		rec.take()
	})
	t.Run("bidirectional stream", func(t *testing.T) {
		stream, err := client.Chat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range []string{"one", "two"} {
			if err := stream.Send(&echov1.ChatRequest{Line: l}); err != nil {
				t.Fatal(err)
			}
			m, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if m.GetLine() != strings.ToUpper(l) {
				t.Fatalf("chat answered %q to %q", m.GetLine(), l)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after CloseSend: %v", err)
		}
		rec.take()
	})
}

func TestWrapperThatSwapsMessagesIsRefused(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	swap := func(next rpc.HandlerFunc) rpc.HandlerFunc {
		return func(ctx context.Context, req rpc.Request, _ any) error {
			return next(ctx, req, &echov1.ChatResponse{})
		}
	}
	startWith(t, ca, reg, "echo", func(s *rpc.Service) {
		echov1.RegisterEchoServiceHandler(s.Server(), &echo{}, swap)
	})
	conn, err := rpc.Dial(reg, mustIdentity(t, ca, "caller"), "echo", rpc.WithDialKeyring(testKeyring(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = echov1.NewEchoService("echo", rpc.FixedConn(conn)).Echo(ctxT(t), &echov1.EchoRequest{})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "EchoService.Echo") {
		t.Fatalf("err = %v", err)
	}
}

func TestWrapHandlerOrder(t *testing.T) {
	t.Parallel()
	var order []string
	w := func(tag string) rpc.HandlerWrapper {
		return func(next rpc.HandlerFunc) rpc.HandlerFunc {
			return func(ctx context.Context, req rpc.Request, rsp any) error {
				order = append(order, tag)
				return next(ctx, req, rsp)
			}
		}
	}
	tests := []struct {
		name     string
		wrappers []rpc.HandlerWrapper
		want     []string
	}{
		{name: "none", want: []string{"h"}},
		{name: "one", wrappers: []rpc.HandlerWrapper{w("a")}, want: []string{"a", "h"}},
		{name: "first is outermost", wrappers: []rpc.HandlerWrapper{w("a"), w("b"), w("c")},
			want: []string{"a", "b", "c", "h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			order = nil
			h := rpc.WrapHandler(func(context.Context, rpc.Request, any) error {
				order = append(order, "h")
				return nil
			}, tt.wrappers...)
			if err := h(context.Background(), nil, nil); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(order, tt.want) {
				t.Fatalf("order %v, want %v", order, tt.want)
			}
		})
	}
}

// keysEcho answers Echo with the sorted keys of the metadata it received.
type keysEcho struct{ *echo }

func (keysEcho) Echo(ctx context.Context, _ *echov1.EchoRequest, rsp *echov1.EchoResponse) error {
	md, _ := metadata.FromContext(ctx)
	keys := slices.Sorted(maps.Keys(md))
	rsp.Message = strings.Join(keys, ",")
	return nil
}

// front calls keysEcho twice: once with the context it was given, once
// with metadata it chose to send on.
type front struct {
	*echo
	down echov1.EchoService
}

func (f front) Echo(ctx context.Context, _ *echov1.EchoRequest, rsp *echov1.EchoResponse) error {
	in, _ := metadata.FromContext(ctx)
	plain, err := f.down.Echo(ctx, &echov1.EchoRequest{})
	if err != nil {
		return err
	}
	tenant, _ := in.Get("x-tenant")
	chosen, err := f.down.Echo(metadata.Set(ctx, "x-forwarded-tenant", tenant), &echov1.EchoRequest{})
	if err != nil {
		return err
	}
	if err := metadata.SetResponse(ctx, metadata.Metadata{"x-served-by": "front"}); err != nil {
		return err
	}
	rsp.Message = "plain=" + plain.GetMessage() + " chosen=" + chosen.GetMessage()
	return nil
}

func TestMetadataIsNotForwardedUnlessChosen(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	startWith(t, ca, reg, "echo", func(s *rpc.Service) {
		echov1.RegisterEchoServiceHandler(s.Server(), keysEcho{&echo{}})
	}, rpc.WithContextMetadata())
	startWith(t, ca, reg, "front", func(s *rpc.Service) {
		echov1.RegisterEchoServiceHandler(s.Server(), front{echo: &echo{},
			down: echov1.NewEchoService("echo", s.Client())})
	}, rpc.WithContextMetadata())
	caller := startWith(t, ca, reg, "caller", nil, rpc.WithContextMetadata())

	ctx := metadata.NewContext(ctxT(t), metadata.Metadata{
		"x-tenant": "acme", "authorization": "Bearer secret-token",
	})
	ctx, answer := metadata.WithResponse(ctx)
	resp, err := echov1.NewEchoService("front", caller.Client()).Echo(ctx, &echov1.EchoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.GetMessage(), "plain= chosen=x-forwarded-tenant"; got != want {
		t.Fatalf("downstream saw %q, want %q", got, want)
	}
	if answer["x-served-by"] != "front" {
		t.Fatalf("response metadata %v", answer)
	}
}
