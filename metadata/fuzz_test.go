package metadata_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	gmd "google.golang.org/grpc/metadata"

	"github.com/moatrpc/moat/metadata"
)

// FuzzSentIsReceived checks that whatever the client interceptor accepts
// to send reaches the handler unchanged, and that it never sends gRPC's
// reserved keys.
func FuzzSentIsReceived(f *testing.F) {
	f.Add("x-tenant", "acme")
	f.Add("Authorization", "Bearer t")
	f.Add("grpc-timeout", "1S")
	f.Add("bad key", "v")
	f.Add("content-type", "text/plain")
	f.Fuzz(func(t *testing.T, key, value string) {
		ctx := metadata.NewContext(context.Background(), metadata.Metadata{key: value})
		var sent gmd.MD
		invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			sent, _ = gmd.FromOutgoingContext(ctx)
			return nil
		}
		if err := metadata.UnaryClientInterceptor()(ctx, "/x.Y/Z", nil, nil, nil, invoker); err != nil {
			if sent != nil {
				t.Fatalf("refused %q but sent %v", key, sent)
			}
			return
		}
		lower := strings.ToLower(key)
		if strings.HasPrefix(lower, "grpc-") || strings.HasPrefix(lower, ":") || lower == "content-type" {
			t.Fatalf("sent reserved key %q", key)
		}
		got, _ := metadata.FromContext(gmd.NewIncomingContext(context.Background(), sent))
		if v, ok := got[lower]; !ok || v != value || len(got) != 1 {
			t.Fatalf("sent %q=%q, received %v", key, value, got)
		}
	})
}
