package bench

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/rpc"
)

// TestFieldsStackSealsOnTheWire checks that the moat-fields stack does
// what it is measured for: the SECRET session token travels sealed, and
// the handler still gets it in clear (the workload's server checks it).
func TestFieldsStackSealsOnTheWire(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := newMaterial()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := fieldsOptions(true)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got string
	)
	// A grpc-go interceptor given as a server option runs before moat's
	// own, so it sees the request as it came off the wire.
	spy := rpc.WithServerOptions(grpc.ChainUnaryInterceptor(func(ctx context.Context, req any,
		_ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*profilev1.GetProfileRequest); ok {
			mu.Lock()
			got = r.GetSessionToken()
			mu.Unlock()
		}
		return h(ctx, req)
	}))
	w := ProfileWorkload()
	ep, err := moatStack(ctx, m, w.Register, append([]rpc.Option{spy}, opts...), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.close()

	if err := w.Call(ctx, ep.conn); err != nil {
		t.Fatalf("call: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(got, "moat:v1:") {
		t.Errorf("session token on the wire is not sealed: %.20q...", got)
	}
}

func TestPayloadSizes(t *testing.T) {
	t.Parallel()
	for _, w := range []Workload{ProfileWorkload(), EchoWorkload()} {
		u := w.(*unary)
		if n := proto.Size(u.req()); n != PayloadSize {
			t.Errorf("%s request is %d bytes, want %d", w.Name(), n, PayloadSize)
		}
	}
	p := ProfileWorkload().(*unary)
	srv := &profileServer{}
	p.Register(registrarFunc(func(_ *grpc.ServiceDesc, impl any) { srv = impl.(*profileServer) }))
	if n := proto.Size(srv.resp); n != PayloadSize {
		t.Errorf("profile reply is %d bytes, want %d", n, PayloadSize)
	}
}

type registrarFunc func(*grpc.ServiceDesc, any)

func (f registrarFunc) RegisterService(d *grpc.ServiceDesc, impl any) { f(d, impl) }

func TestMoatStackRefusesSecretsWithoutKeyset(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := newMaterial()
	if err != nil {
		t.Fatal(err)
	}
	st := MoatStack(StackMoat, "", nil, nil)
	if _, err := startStack(ctx, st, m, ProfileWorkload()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("moat without a keyset served SECRET fields: %v", err)
	}
}
