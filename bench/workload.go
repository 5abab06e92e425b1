package bench

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	benchv1 "github.com/moatrpc/moat/proto/moat/bench/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
)

// PayloadSize is the size of the requests and replies of the built-in unary
// workloads, as encoded by protobuf.
const PayloadSize = 1024

// ChunkSize is the size of each message of the streaming measurement.
const ChunkSize = 64 * 1024

// Workload is a unary call the runner repeats on every stack: the service
// it serves and the call it makes. Call runs from many goroutines at once,
// so implementations must be safe for concurrent use.
//
// [Unary] builds a Workload from a generated service; see the package
// documentation for measuring your own service.
type Workload interface {
	// Name identifies the workload in reports: short, lowercase, no spaces.
	Name() string
	// Register registers the service implementation the calls reach.
	Register(s grpc.ServiceRegistrar)
	// Call makes one call on cc and returns its error.
	Call(ctx context.Context, cc grpc.ClientConnInterface) error
}

// Unary returns a [Workload] named name that calls the full gRPC method
// ("/pkg.Service/Method") with a request from newRequest, decoding the
// reply into a message from newReply. register registers the
// implementation that serves method, for example:
//
//	bench.Unary("greet", greeterv1.GreeterService_Greet_FullMethodName,
//		func(s grpc.ServiceRegistrar) { greeterv1.RegisterGreeterServiceServer(s, &greeter{}) },
//		func() proto.Message { return &greeterv1.GreetRequest{Name: "ada"} },
//		func() proto.Message { return new(greeterv1.GreetResponse) })
//
// newRequest may return the same message every time: the runner never
// changes a request, and moat's sealing interceptors seal a copy.
func Unary(
	name, method string,
	register func(grpc.ServiceRegistrar),
	newRequest, newReply func() proto.Message,
) Workload {
	return &unary{name: name, method: method, register: register, req: newRequest, reply: newReply}
}

type unary struct {
	name       string
	method     string
	register   func(grpc.ServiceRegistrar)
	req, reply func() proto.Message
}

func (u *unary) Name() string                     { return u.name }
func (u *unary) Register(s grpc.ServiceRegistrar) { u.register(s) }

func (u *unary) Call(ctx context.Context, cc grpc.ClientConnInterface) error {
	return cc.Invoke(ctx, u.method, u.req(), u.reply())
}

func validateWorkload(w Workload) error {
	if w == nil {
		return fmt.Errorf("bench: nil workload")
	}
	name := w.Name()
	if name == "" || strings.ContainsAny(name, " /\t\n") {
		return fmt.Errorf("bench: workload name %q must be non-empty, without spaces or '/'", name)
	}
	return nil
}

// ProfileWorkload is the example profile API's GetProfile call: a
// request holding a 1 KiB session token, a field marked SECRET that moat's
// field interceptors seal, and a reply of about 1 KiB holding a profile
// whose fields are marked PII. The server checks that it received the
// token in clear, so a stack that sealed and failed to unseal fails.
func ProfileWorkload() Workload {
	req := &profilev1.GetProfileRequest{}
	pad(req, func(n int) { req.SessionToken = "tok." + strings.Repeat("x", n) })
	resp := &profilev1.GetProfileResponse{Profile: &profilev1.Profile{
		UserId: "0b6f1d2e-5a7c-4c1e-9a53-8f2d7e6c1b40",
		Name:   "Ada Lovelace",
		Phone:  "+44 20 7946 0000",
		Email:  "ada@example.org",
		Address: &profilev1.Address{
			Street:     "12 St James's Square",
			City:       "London",
			PostalCode: "SW1Y 4JH",
			Country:    "GB",
		},
	}}
	street := resp.Profile.Address.Street
	pad(resp, func(n int) { resp.Profile.Address.Street = street + strings.Repeat(" ", n) })
	srv := &profileServer{token: req.SessionToken, resp: resp}
	return Unary("profile", profilev1.ProfileService_GetProfile_FullMethodName,
		func(s grpc.ServiceRegistrar) { profilev1.RegisterProfileServiceServer(s, srv) },
		func() proto.Message { return req },
		func() proto.Message { return new(profilev1.GetProfileResponse) })
}

type profileServer struct {
	profilev1.UnimplementedProfileServiceServer
	token string
	resp  *profilev1.GetProfileResponse
}

func (p *profileServer) GetProfile(
	_ context.Context,
	req *profilev1.GetProfileRequest,
) (*profilev1.GetProfileResponse, error) {
	if req.GetSessionToken() != p.token {
		return nil, status.Error(codes.Unauthenticated, "bench: session token did not arrive in clear")
	}
	return p.resp, nil
}

// EchoWorkload is the bench API's Echo call: 1 KiB of bytes each way, in
// messages with no sensitive field.
func EchoWorkload() Workload {
	req := &benchv1.EchoRequest{}
	pad(req, func(n int) { req.Payload = make([]byte, n) })
	return Unary("echo", benchv1.BenchService_Echo_FullMethodName,
		benchServer{}.register,
		func() proto.Message { return req },
		func() proto.Message { return new(benchv1.EchoResponse) })
}

// pad sets the padding of m with set(n), n bytes long, so that m encodes
// to PayloadSize bytes: the largest n that fits, since a length prefix
// grows by a byte past 127.
func pad(m proto.Message, set func(n int)) {
	set(0)
	n := PayloadSize - proto.Size(m)
	for ; n > 0; n-- {
		set(n)
		if proto.Size(m) <= PayloadSize {
			return
		}
	}
}

// benchServer serves the bench API.
type benchServer struct {
	benchv1.UnimplementedBenchServiceServer
}

func (b benchServer) register(s grpc.ServiceRegistrar) { benchv1.RegisterBenchServiceServer(s, b) }

func (benchServer) Echo(
	_ context.Context,
	req *benchv1.EchoRequest,
) (*benchv1.EchoResponse, error) {
	return &benchv1.EchoResponse{Payload: req.GetPayload()}, nil
}

// maxChunks bounds one Download stream.
const maxChunks = 1 << 16

func (benchServer) Download(
	req *benchv1.DownloadRequest,
	stream grpc.ServerStreamingServer[benchv1.DownloadResponse],
) error {
	size, n := int(req.GetChunkSize()), int(req.GetChunks())
	if size < 0 || size > 4<<20 || n < 0 || n > maxChunks {
		return status.Error(codes.InvalidArgument, "bench: chunk size or count out of range")
	}
	chunk := &benchv1.DownloadResponse{Data: make([]byte, size)}
	for range n {
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
	return nil
}

// dedupRegistrar registers each service once, so that workloads sharing a
// service (the bench API serves Echo and Download) can all register it.
type dedupRegistrar struct {
	s    grpc.ServiceRegistrar
	seen map[string]bool
}

func (d *dedupRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if d.seen[desc.ServiceName] {
		return
	}
	d.seen[desc.ServiceName] = true
	d.s.RegisterService(desc, impl)
}
