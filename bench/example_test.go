package bench_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/moatrpc/moat/bench"
	echov1 "github.com/moatrpc/moat/proto/moat/example/echo/v1"
)

// echoServer stands for your own service's implementation.
type echoServer struct {
	echov1.UnimplementedEchoServiceServer
}

func (echoServer) Echo(_ context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	return &echov1.EchoResponse{Message: req.GetMessage()}, nil
}

// ExampleUnary measures a service of your own on every stack. A real run
// keeps the defaults (500ms per measurement, 8 rounds) and writes the reports
// with rep.WriteTable and rep.WriteFiles.
func ExampleUnary() {
	w := bench.Unary("echo-example", echov1.EchoService_Echo_FullMethodName,
		func(s grpc.ServiceRegistrar) { echov1.RegisterEchoServiceServer(s, echoServer{}) },
		func() proto.Message { return &echov1.EchoRequest{Message: "hello"} },
		func() proto.Message { return new(echov1.EchoResponse) })

	rep, err := bench.Run(context.Background(), bench.Config{
		Workloads:   []bench.Workload{w},
		Kinds:       []bench.Kind{bench.KindUnary},
		Concurrency: []int{1, 8},
		Duration:    20 * time.Millisecond,
		Repeats:     2,
	})
	if err != nil {
		log.Fatal(err)
	}
	// EchoRequest has a SECRET field, which the moat stack, without a
	// keyset, refuses to serve (a note of the report says so): 4 stacks
	// at 2 levels of concurrency.
	r, _ := rep.Find(bench.KindUnary, bench.StackMoatFields, map[string]string{"concurrency": "8"})
	fmt.Println(len(rep.Results), "results;", r.Case, r.Params["workload"],
		len(r.Metrics["calls_per_s"].Values), "rounds")
	// Output: 8 results; moat-fields echo-example 2 rounds
}
