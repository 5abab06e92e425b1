package metadata_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"testing"

	"google.golang.org/grpc"
	gmd "google.golang.org/grpc/metadata"

	"github.com/moatrpc/moat/metadata"
)

func TestIsSensitive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		want bool
	}{
		{"authorization", true},
		{"Authorization", true},
		{"proxy-authorization", true},
		{"cookie", true},
		{"set-cookie", true},
		{"x-auth-token", true},
		{"x-client-secret", true},
		{"db-password", true},
		{"x-api-key", true},
		{"x-session-id", true},
		{"x-tenant", false},
		{"x-request-id", false},
		{"traceparent", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			if got := metadata.IsSensitive(tt.key); got != tt.want {
				t.Fatalf("IsSensitive(%q) = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
}

func TestPrintingRedactsSensitiveValues(t *testing.T) {
	t.Parallel()
	md := metadata.Metadata{
		"authorization": "Bearer s3cr3t-bearer",
		"cookie":        "sid=c00kie-value",
		"x-auth-token":  "t0ken-value",
		"x-tenant":      "acme",
	}
	secrets := []string{"s3cr3t-bearer", "c00kie-value", "t0ken-value"}

	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	logger.Info("call", "md", md)
	jsonLogged := &bytes.Buffer{}
	slog.New(slog.NewJSONHandler(jsonLogged, nil)).Info("call", "md", md)

	tests := []struct {
		name string
		out  string
	}{
		{"fmt %v", fmt.Sprintf("%v", md)},
		{"fmt %s", fmt.Sprintf("%s", md)},
		{"String", md.String()},
		{"slog text", logged.String()},
		{"slog json", jsonLogged.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range secrets {
				if strings.Contains(tt.out, s) {
					t.Fatalf("%s printed %q: %s", tt.name, s, tt.out)
				}
			}
			if !strings.Contains(tt.out, "acme") || !strings.Contains(tt.out, metadata.RedactedValue) {
				t.Fatalf("%s lost the public value or the redaction mark: %s", tt.name, tt.out)
			}
		})
	}
	if md["authorization"] != "Bearer s3cr3t-bearer" {
		t.Fatal("redaction changed the metadata itself")
	}
}

func TestOutgoingContext(t *testing.T) {
	t.Parallel()
	base := context.Background()
	tests := []struct {
		name string
		ctx  context.Context
		want metadata.Metadata
	}{
		{"none", base, nil},
		{"new", metadata.NewContext(base, metadata.Metadata{"X-Tenant": "a"}),
			metadata.Metadata{"x-tenant": "a"}},
		{"new replaces", metadata.NewContext(metadata.NewContext(base, metadata.Metadata{"a": "1"}),
			metadata.Metadata{"b": "2"}), metadata.Metadata{"b": "2"}},
		{"set adds", metadata.Set(metadata.NewContext(base, metadata.Metadata{"a": "1"}), "B", "2"),
			metadata.Metadata{"a": "1", "b": "2"}},
		{"merge keeps without overwrite", metadata.MergeContext(
			metadata.NewContext(base, metadata.Metadata{"a": "1"}), metadata.Metadata{"a": "x", "c": "3"}, false),
			metadata.Metadata{"a": "1", "c": "3"}},
		{"merge overwrites", metadata.MergeContext(
			metadata.NewContext(base, metadata.Metadata{"a": "1"}), metadata.Metadata{"a": "x"}, true),
			metadata.Metadata{"a": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := metadata.OutgoingFromContext(tt.ctx)
			if ok != (tt.want != nil) || !maps.Equal(got, tt.want) {
				t.Fatalf("outgoing = %v, %v; want %v", got, ok, tt.want)
			}
		})
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	md := metadata.Metadata{"x-tenant": "acme", "Mixed-Case": "m"}
	tests := []struct {
		key, want string
		ok        bool
	}{
		{"x-tenant", "acme", true},
		{"X-Tenant", "acme", true},
		{"mixed-case", "m", true},
		{"absent", "", false},
	}
	for _, tt := range tests {
		if got, ok := md.Get(tt.key); got != tt.want || ok != tt.ok {
			t.Errorf("Get(%q) = %q, %v", tt.key, got, ok)
		}
	}
}

func TestFromContextReadsGRPCMetadataWithoutReservedKeys(t *testing.T) {
	t.Parallel()
	ctx := gmd.NewIncomingContext(context.Background(), gmd.MD{
		"x-tenant":     {"acme", "second"},
		"content-type": {"application/grpc"},
		"user-agent":   {"grpc-go"},
		":authority":   {"localhost"},
		"grpc-timeout": {"1S"},
	})
	md, ok := metadata.FromContext(ctx)
	if !ok || !maps.Equal(md, metadata.Metadata{"x-tenant": "acme"}) {
		t.Fatalf("FromContext = %v, %v", md, ok)
	}
	if _, ok := metadata.FromContext(context.Background()); ok {
		t.Fatal("metadata found in an empty context")
	}
}

// transportStream records trailers set by a server interceptor.
type transportStream struct {
	trailer gmd.MD
}

func (s *transportStream) Method() string          { return "/x.Y/Z" }
func (s *transportStream) SetHeader(gmd.MD) error  { return nil }
func (s *transportStream) SendHeader(gmd.MD) error { return nil }
func (s *transportStream) SetTrailer(md gmd.MD) error {
	s.trailer = gmd.Join(s.trailer, md)
	return nil
}

func TestUnaryServerInterceptor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		incoming    gmd.MD
		respond     metadata.Metadata
		wantIn      metadata.Metadata
		wantTrailer gmd.MD
	}{
		{name: "nothing"},
		{name: "reads incoming, never forwards it",
			incoming: gmd.MD{"x-tenant": {"acme"}, "authorization": {"Bearer t"}},
			wantIn:   metadata.Metadata{"x-tenant": "acme", "authorization": "Bearer t"}},
		{name: "response metadata becomes trailers", respond: metadata.Metadata{"X-Served-By": "a"},
			wantTrailer: gmd.MD{"x-served-by": {"a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := &transportStream{}
			ctx := grpc.NewContextWithServerTransportStream(context.Background(), ts)
			if tt.incoming != nil {
				ctx = gmd.NewIncomingContext(ctx, tt.incoming)
			}
			// A caller's outgoing metadata must not leak into the handler's.
			ctx = metadata.NewContext(ctx, metadata.Metadata{"leak": "x"})
			h := func(ctx context.Context, _ any) (any, error) {
				in, _ := metadata.FromContext(ctx)
				if len(in) != len(tt.wantIn) || !maps.Equal(in, tt.wantIn) {
					t.Errorf("handler read %v, want %v", in, tt.wantIn)
				}
				if out, _ := metadata.OutgoingFromContext(ctx); len(out) != 0 {
					t.Errorf("handler's calls would send %v", out)
				}
				if tt.respond != nil {
					if err := metadata.SetResponse(ctx, tt.respond); err != nil {
						t.Error(err)
					}
				}
				return "ok", nil
			}
			resp, err := metadata.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{}, h)
			if err != nil || resp != "ok" {
				t.Fatalf("interceptor returned %v, %v", resp, err)
			}
			if len(ts.trailer) != len(tt.wantTrailer) || fmt.Sprint(ts.trailer) != fmt.Sprint(tt.wantTrailer) {
				t.Fatalf("trailer %v, want %v", ts.trailer, tt.wantTrailer)
			}
		})
	}
}

func TestSetResponseNeedsInterceptor(t *testing.T) {
	t.Parallel()
	err := metadata.SetResponse(context.Background(), metadata.Metadata{"a": "b"})
	if err == nil || !strings.HasPrefix(err.Error(), "metadata: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnaryClientInterceptor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		md       metadata.Metadata
		wantSent gmd.MD
		wantErr  string
	}{
		{name: "nothing set"},
		{name: "sends lower-case keys", md: metadata.Metadata{"X-Tenant": "acme"},
			wantSent: gmd.MD{"x-tenant": {"acme"}}},
		{name: "refuses invalid key", md: metadata.Metadata{"bad key": "v"}, wantErr: `"bad key"`},
		{name: "refuses reserved key", md: metadata.Metadata{"grpc-timeout": "1S"}, wantErr: "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tt.md != nil {
				ctx = metadata.NewContext(ctx, tt.md)
			}
			ctx, answer := metadata.WithResponse(ctx)
			var sent gmd.MD
			invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
				sent, _ = gmd.FromOutgoingContext(ctx)
				for _, o := range opts {
					switch o := o.(type) {
					case grpc.HeaderCallOption:
						*o.HeaderAddr = gmd.MD{"content-type": {"application/grpc"}, "x-h": {"1"}}
					case grpc.TrailerCallOption:
						*o.TrailerAddr = gmd.MD{"x-t": {"2"}}
					}
				}
				return nil
			}
			err := metadata.UnaryClientInterceptor()(ctx, "/x.Y/Z", nil, nil, nil, invoker)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(sent) != fmt.Sprint(tt.wantSent) && len(sent)+len(tt.wantSent) > 0 {
				t.Fatalf("sent %v, want %v", sent, tt.wantSent)
			}
			if !maps.Equal(answer, metadata.Metadata{"x-h": "1", "x-t": "2"}) {
				t.Fatalf("response metadata %v", answer)
			}
		})
	}
}

// clientStream ends after one message with a header and a trailer.
type clientStream struct {
	grpc.ClientStream
	recv int
}

func (s *clientStream) Header() (gmd.MD, error) { return gmd.MD{"x-h": {"1"}}, nil }
func (s *clientStream) Trailer() gmd.MD         { return gmd.MD{"x-t": {"2"}} }
func (s *clientStream) RecvMsg(any) error {
	s.recv++
	if s.recv > 1 {
		return io.EOF
	}
	return nil
}

func TestStreamClientInterceptorCollectsResponseAtEnd(t *testing.T) {
	t.Parallel()
	ctx, answer := metadata.WithResponse(metadata.NewContext(context.Background(), metadata.Metadata{"a": "1"}))
	var sent gmd.MD
	streamer := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string,
		_ ...grpc.CallOption) (grpc.ClientStream, error) {
		sent, _ = gmd.FromOutgoingContext(ctx)
		return &clientStream{}, nil
	}
	cs, err := metadata.StreamClientInterceptor()(ctx, &grpc.StreamDesc{}, nil, "/x.Y/Z", streamer)
	if err != nil {
		t.Fatal(err)
	}
	if sent.Get("a")[0] != "1" {
		t.Fatalf("sent %v", sent)
	}
	if err := cs.RecvMsg(nil); err != nil || len(answer) != 0 {
		t.Fatalf("first message: %v, answer %v", err, answer)
	}
	if err := cs.RecvMsg(nil); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if !maps.Equal(answer, metadata.Metadata{"x-h": "1", "x-t": "2"}) {
		t.Fatalf("response metadata %v", answer)
	}
}
