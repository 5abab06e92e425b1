// Command protoc-gen-moat is a protoc (and buf) plugin that writes, for
// every .proto file with services, a <name>_moat.pb.go file beside the
// output of protoc-gen-go and protoc-gen-go-grpc, with go-micro style
// stubs on top of the standard gRPC ones:
//
//   - a client per service, NewXxx(name, c) returning an Xxx interface,
//     that reaches the service registered as name through a moat
//     rpc.Client (or any rpc.Connector);
//   - a handler interface per service, XxxHandler, in go-micro's shape
//     (request in, response out, error returned), and
//     RegisterXxxHandler(s, h, wrappers...) that serves it on a moat
//     rpc.Server with go-micro style handler wrappers.
//
// The generated code needs the protoc-gen-go-grpc output of the same file
// (generic streams, protoc-gen-go-grpc v1.5 or later) in the same package.
//
// It accepts protoc-gen-go's "paths" parameter; with buf:
//
//	plugins:
//	  - local: bin/protoc-gen-moat
//	    out: proto
//	    opt: paths=source_relative
package main

import (
	"flag"
	"fmt"
	"os"

	"google.golang.org/protobuf/compiler/protogen"
)

// version is written into the header of generated files.
const version = "v0.1.0"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("protoc-gen-moat", version)
		return
	}
	var flags flag.FlagSet
	protogen.Options{ParamFunc: flags.Set}.Run(generate)
}
