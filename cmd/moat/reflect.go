package main

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// moat's field options must be known when descriptors are decoded,
	// so that sensitivity marks are read and redacted.
	_ "github.com/moatrpc/moat/proto/moat/options/v1"
)

// reflector asks a server for its services and their descriptors with
// gRPC server reflection, over one stream. It is not safe for concurrent
// use.
type reflector struct {
	stream reflectionv1.ServerReflection_ServerReflectionInfoClient
	cancel context.CancelFunc
	files  map[string]*descriptorpb.FileDescriptorProto
}

func newReflector(ctx context.Context, conn grpc.ClientConnInterface) (*reflector, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &reflector{stream: stream, cancel: cancel, files: map[string]*descriptorpb.FileDescriptorProto{}}, nil
}

func (r *reflector) close() {
	_ = r.stream.CloseSend()
	r.cancel()
}

func (r *reflector) ask(req *reflectionv1.ServerReflectionRequest) (*reflectionv1.ServerReflectionResponse, error) {
	if err := r.stream.Send(req); err != nil {
		return nil, fmt.Errorf("reflection: %w", err)
	}
	resp, err := r.stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("reflection: %w", err)
	}
	if e := resp.GetErrorResponse(); e != nil {
		return nil, fmt.Errorf("reflection: %s", e.GetErrorMessage())
	}
	return resp, nil
}

func (r *reflector) listServices() ([]string, error) {
	resp, err := r.ask(&reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{},
	})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// add decodes the file descriptors of a reflection answer.
func (r *reflector) add(resp *reflectionv1.ServerReflectionResponse) error {
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			return fmt.Errorf("reflection: bad file descriptor: %w", err)
		}
		r.files[fd.GetName()] = fd
	}
	return nil
}

// filesFor returns the files defining symbol and every file they import.
func (r *reflector) filesFor(symbol string) (*protoregistry.Files, error) {
	resp, err := r.ask(&reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol},
	})
	if err != nil {
		return nil, err
	}
	if err := r.add(resp); err != nil {
		return nil, err
	}
	// The server sends dependencies with the file, but only once per
	// stream: fetch any the map still lacks.
	for missing := r.missing(); len(missing) > 0; missing = r.missing() {
		for _, name := range missing {
			resp, err := r.ask(&reflectionv1.ServerReflectionRequest{
				MessageRequest: &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: name},
			})
			if err != nil {
				return nil, err
			}
			if err := r.add(resp); err != nil {
				return nil, err
			}
			if _, ok := r.files[name]; !ok {
				return nil, fmt.Errorf("reflection: server did not send %s", name)
			}
		}
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, fd := range r.files {
		set.File = append(set.File, fd)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("reflection: %w", err)
	}
	return files, nil
}

func (r *reflector) missing() []string {
	var out []string
	for _, fd := range r.files {
		for _, dep := range fd.GetDependency() {
			if _, ok := r.files[dep]; !ok {
				out = append(out, dep)
			}
		}
	}
	return out
}
