package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	echov1 "github.com/moatrpc/moat/proto/moat/example/echo/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	optionsv1 "github.com/moatrpc/moat/proto/moat/options/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// request builds the CodeGeneratorRequest protoc or buf would send to
// generate gen, with every dependency before the files that import it.
func request(param string, deps []*descriptorpb.FileDescriptorProto,
	gen ...*descriptorpb.FileDescriptorProto) *pluginpb.CodeGeneratorRequest {
	req := &pluginpb.CodeGeneratorRequest{Parameter: proto.String(param)}
	req.ProtoFile = append(req.ProtoFile, deps...)
	for _, f := range gen {
		req.FileToGenerate = append(req.FileToGenerate, f.GetName())
		req.ProtoFile = append(req.ProtoFile, f)
	}
	return req
}

// withDeps returns fd's dependencies, recursively and in import order.
func withDeps(fds ...protoreflect.FileDescriptor) []*descriptorpb.FileDescriptorProto {
	var out []*descriptorpb.FileDescriptorProto
	seen := map[string]bool{}
	var visit func(protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			visit(imports.Get(i).FileDescriptor)
		}
		out = append(out, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range fds {
		visit(fd)
	}
	return out
}

// legacyFile is a hand-built file with a deprecated service and method and
// comments, which the compiled example descriptors do not carry.
func legacyFile() *descriptorpb.FileDescriptorProto {
	msg := func(name string) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name)}
	}
	return &descriptorpb.FileDescriptorProto{
		Name:        proto.String("moat/test/legacy/v1/legacy.proto"),
		Package:     proto.String("moat.test.legacy.v1"),
		Syntax:      proto.String("proto3"),
		Options:     &descriptorpb.FileOptions{GoPackage: proto.String("example.com/legacy/v1;legacyv1")},
		MessageType: []*descriptorpb.DescriptorProto{msg("OldRequest"), msg("OldResponse")},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:    proto.String("LegacyService"),
			Options: &descriptorpb.ServiceOptions{Deprecated: proto.Bool(true)},
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name:       proto.String("Old"),
				InputType:  proto.String(".moat.test.legacy.v1.OldRequest"),
				OutputType: proto.String(".moat.test.legacy.v1.OldResponse"),
				Options:    &descriptorpb.MethodOptions{Deprecated: proto.Bool(true)},
			}},
		}},
		SourceCodeInfo: &descriptorpb.SourceCodeInfo{Location: []*descriptorpb.SourceCodeInfo_Location{
			{Path: []int32{6, 0}, Span: []int32{1, 0, 1}, LeadingComments: proto.String(" LegacyService is kept for old callers.\n")},
			{Path: []int32{6, 0, 2, 0}, Span: []int32{2, 0, 1}, LeadingComments: proto.String(" Old does what it always did.\n")},
		}},
	}
}

func TestGolden(t *testing.T) {
	t.Parallel()
	examples := withDeps(authv1.File_moat_example_auth_v1_auth_proto,
		profilev1.File_moat_example_profile_v1_profile_proto, echov1.File_moat_example_echo_v1_echo_proto)
	byName := map[string]*descriptorpb.FileDescriptorProto{}
	for _, f := range examples {
		byName[f.GetName()] = f
	}
	deps := withDeps(optionsv1.File_moat_options_v1_options_proto)

	tests := []struct {
		name  string
		req   *pluginpb.CodeGeneratorRequest
		files []string // generated files expected, each with a golden
	}{
		{
			name:  "auth",
			req:   request("paths=source_relative", deps, byName["moat/example/auth/v1/auth.proto"]),
			files: []string{"moat/example/auth/v1/auth_moat.pb.go"},
		},
		{
			name:  "profile",
			req:   request("paths=source_relative", deps, byName["moat/example/profile/v1/profile.proto"]),
			files: []string{"moat/example/profile/v1/profile_moat.pb.go"},
		},
		{
			name: "echo, every kind of stream, import paths",
			req:  request("", deps, byName["moat/example/echo/v1/echo.proto"]),
			files: []string{
				"github.com/moatrpc/moat/proto/moat/example/echo/v1/echo_moat.pb.go",
			},
		},
		{
			name:  "deprecated, with comments",
			req:   request("paths=source_relative", nil, legacyFile()),
			files: []string{"moat/test/legacy/v1/legacy_moat.pb.go"},
		},
		{
			name: "no services, no file",
			req:  request("paths=source_relative", nil, deps...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gen, err := protogen.Options{}.New(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if err := generate(gen); err != nil {
				t.Fatal(err)
			}
			resp := gen.Response()
			if resp.Error != nil {
				t.Fatalf("plugin error: %s", resp.GetError())
			}
			if len(resp.File) != len(tt.files) {
				var names []string
				for _, f := range resp.File {
					names = append(names, f.GetName())
				}
				t.Fatalf("generated %v, want %v", names, tt.files)
			}
			for i, f := range resp.File {
				if f.GetName() != tt.files[i] {
					t.Fatalf("generated %s, want %s", f.GetName(), tt.files[i])
				}
				golden := filepath.Join("testdata", filepath.Base(f.GetName())+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(f.GetContent()), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run 'go test ./cmd/protoc-gen-moat -update' to create it)", err)
				}
				if !bytes.Equal(want, []byte(f.GetContent())) {
					t.Errorf("%s differs from %s:\n%s", f.GetName(), golden,
						firstDiff(string(want), f.GetContent()))
				}
			}
		})
	}
}

func TestGeneratedFilesAreReproducible(t *testing.T) {
	t.Parallel()
	fd := withDeps(echov1.File_moat_example_echo_v1_echo_proto)
	var outs []string
	for range 3 {
		gen, err := protogen.Options{}.New(request("paths=source_relative", fd[:len(fd)-1], fd[len(fd)-1]))
		if err != nil {
			t.Fatal(err)
		}
		if err := generate(gen); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, gen.Response().File[0].GetContent())
	}
	if outs[0] != outs[1] || outs[1] != outs[2] {
		t.Fatal("the same request generated different files")
	}
}

func TestBadParameterFails(t *testing.T) {
	t.Parallel()
	// main's empty FlagSet refuses every parameter.
	var flags flag.FlagSet
	_, err := protogen.Options{ParamFunc: flags.Set}.New(request("shiny=yes", nil, legacyFile()))
	if err == nil || !strings.Contains(err.Error(), "shiny") {
		t.Fatalf("unknown parameter: err = %v", err)
	}
}

// firstDiff shows the first line where two texts differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, wl, gl)
		}
	}
	return "(no line differs)"
}
