package bench

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	benchv1 "github.com/moatrpc/moat/proto/moat/bench/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

// Interceptors measured by [KindInterceptor]. InterceptorNone calls the
// handler through a function value and nothing else: the baseline each
// cost is taken from.
const (
	InterceptorNone   = "none"
	InterceptorSealer = "sealer"
	InterceptorLogger = "logger"
)

type interceptorSpec struct {
	name    string
	side    string
	message string
}

// interceptorSpecs: the sealer on a message with no sensitive field (the
// bench API's Echo) and on the profile call, whose request has a SECRET
// field, and the redacting call logger; each with its baseline.
var interceptorSpecs = []interceptorSpec{
	{InterceptorNone, "client", "echo"},
	{InterceptorSealer, "client", "echo"},
	{InterceptorNone, "server", "echo"},
	{InterceptorSealer, "server", "echo"},
	{InterceptorNone, "client", "profile"},
	{InterceptorSealer, "client", "profile"},
	{InterceptorNone, "server", "profile"},
	{InterceptorSealer, "server", "profile"},
	{InterceptorLogger, "client", "echo"},
	{InterceptorLogger, "server", "echo"},
}

func interceptorCases(cfg Config, m *material) ([]*caseRun, error) {
	sealer, err := newSealer()
	if err != nil {
		return nil, fmt.Errorf("%w: security/fields: %v", ErrUnavailable, err)
	}
	logger := newCallLogger()
	d := max(cfg.Duration/4, 10*time.Millisecond)
	var cases []*caseRun
	for _, spec := range interceptorSpecs {
		op, err := interceptorOp(spec, sealer, logger, m)
		if err != nil {
			return nil, err
		}
		params := map[string]string{"side": spec.side, "message": spec.message}
		measure := func(context.Context) (sample, error) { return timeLoop(op, d) }
		cases = append(cases, newCase(KindInterceptor, spec.name, params, measure))
	}
	return cases, nil
}

// interceptorOp returns a function running n calls through the
// interceptor of spec, around an invoker or handler that does nothing.
func interceptorOp(
	spec interceptorSpec,
	sealer *fields.Sealer,
	logger *fields.CallLogger,
	m *material,
) (func(n int) error, error) {
	var (
		method string
		req    proto.Message
		reply  func() proto.Message
		resp   proto.Message
	)
	switch spec.message {
	case "echo":
		method = benchv1.BenchService_Echo_FullMethodName
		req = &benchv1.EchoRequest{Payload: make([]byte, PayloadSize-3)}
		resp = &benchv1.EchoResponse{Payload: make([]byte, PayloadSize-3)}
		reply = func() proto.Message { return new(benchv1.EchoResponse) }
	case "profile":
		method = profilev1.ProfileService_GetProfile_FullMethodName
		w := ProfileWorkload().(*unary)
		req = w.req()
		resp = &profilev1.GetProfileResponse{Profile: &profilev1.Profile{UserId: "u1"}}
		reply = func() proto.Message { return new(profilev1.GetProfileResponse) }
	}

	if spec.side == "client" {
		ctx := context.Background()
		// grpc-go's codec decodes the reply through its reflection state,
		// which a new message sets up on first use: the invoker does the
		// same, so that the interceptor is not charged for it.
		invoker := func(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn,
			_ ...grpc.CallOption) error {
			reply.(proto.Message).ProtoReflect()
			return nil
		}
		var ic grpc.UnaryClientInterceptor
		switch spec.name {
		case InterceptorSealer:
			ic = sealer.UnaryClientInterceptor()
		case InterceptorLogger:
			ic = logger.UnaryClientInterceptor()
		default:
			ic = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
				invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return invoker(ctx, method, req, reply, cc, opts...)
			}
		}
		return func(n int) error {
			for range n {
				if err := ic(ctx, method, req, reply(), nil, invoker); err != nil {
					return err
				}
			}
			return nil
		}, nil
	}

	// A server receives what a client sent: for the profile call, a request
	// whose token is sealed. Unsealing works in place, so every call gets a
	// fresh copy, in the baseline too.
	in := func() proto.Message { return req }
	if spec.message == "profile" {
		sealed := proto.Clone(req)
		if err := sealer.Seal(sealed); err != nil {
			return nil, err
		}
		in = func() proto.Message { return proto.Clone(sealed) }
	}
	ctx := security.ContextWithPeer(context.Background(), m.client.ID())
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(
		"content-type", "application/grpc", "user-agent", "grpc-go", ":authority", serverService))
	info := &grpc.UnaryServerInfo{FullMethod: method}
	handler := func(context.Context, any) (any, error) { return resp, nil }
	var is grpc.UnaryServerInterceptor
	switch spec.name {
	case InterceptorSealer:
		is = sealer.UnaryServerInterceptor()
	case InterceptorLogger:
		is = logger.UnaryServerInterceptor()
	default:
		is = func(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
			h grpc.UnaryHandler) (any, error) {
			return h(ctx, req)
		}
	}
	return func(n int) error {
		for range n {
			if _, err := is(ctx, in(), info, handler); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// timeLoop runs op for about d on this goroutine and returns nanoseconds
// and allocations per call.
func timeLoop(op func(n int) error, d time.Duration) (sample, error) {
	n := 1
	for {
		start := time.Now()
		if err := op(n); err != nil {
			return sample{}, err
		}
		elapsed := time.Since(start)
		if elapsed >= d/10 || n >= 1<<30 {
			n = max(int(float64(n)*float64(d)/float64(max(elapsed, time.Microsecond))), 1)
			break
		}
		n *= 4
	}
	before := snapshot()
	start := time.Now()
	if err := op(n); err != nil {
		return sample{}, err
	}
	elapsed := time.Since(start)
	spent := snapshot().since(before)
	ns := float64(elapsed) / float64(n)
	return sample{
		values: []value{
			{"ns_per_call", "ns", ns},
			{"allocs_per_call", "allocs", float64(spent.mallocs) / float64(n)},
		},
		summary: fmt.Sprintf("%.0f ns/call", ns),
	}, nil
}

// finishInterceptors adds to each case its cost: its time per call minus
// that of the baseline of the same side and message, round by round.
func finishInterceptors(cases []*caseRun) {
	base := map[string]*caseRun{}
	for _, c := range cases {
		if c.name == InterceptorNone {
			base[c.params["side"]+"/"+c.params["message"]] = c
		}
	}
	for _, c := range cases {
		b := base[c.params["side"]+"/"+c.params["message"]]
		if b == nil || c.err != nil || b.err != nil {
			continue
		}
		mine, theirs := c.values["ns_per_call"], b.values["ns_per_call"]
		cost := make([]float64, min(len(mine), len(theirs)))
		for i := range cost {
			cost[i] = mine[i] - theirs[i]
		}
		c.order = append(c.order, "cost_ns")
		c.units["cost_ns"] = "ns"
		c.values["cost_ns"] = cost
	}
}
