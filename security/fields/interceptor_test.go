package fields_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

// sealing returns the server and client options of a sealer.
func serverSealing(s *fields.Sealer) serverConfig {
	return serverConfig{
		unary:  []grpc.UnaryServerInterceptor{s.UnaryServerInterceptor()},
		stream: []grpc.StreamServerInterceptor{s.StreamServerInterceptor()},
	}
}

func clientSealing(s *fields.Sealer) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(s.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(s.StreamClientInterceptor()),
	}
}

func assertSealedOnWire(t *testing.T, m proto.Message, secrets []string) {
	t.Helper()
	wire, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if bytes.Contains(wire, []byte(s)) {
			t.Fatalf("a plaintext crossed the wire")
		}
	}
}

func TestUnaryInterceptors(t *testing.T) {
	t.Parallel()
	ring := newRing(t, fields.DefaultKeyset, "billing")
	s := newSealer(t, ring, fields.WithRequireSealed())
	g := newGen(11)
	in := g.envelope()
	in.Token = g.secret()
	orig := proto.Clone(in)

	t.Run("both sides seal", func(t *testing.T) {
		t.Parallel()
		srv, cc := startEcho(t, serverSealing(s), clientSealing(s)...)
		out, err := echo(testContext(t), cc, in)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(out, orig) {
			t.Fatalf("echo differs:\n got %v\nwant %v", out, orig)
		}
		if !proto.Equal(in, orig) {
			t.Fatal("the client interceptor changed the caller's request")
		}
		if seen := srv.last(); len(seen) != 1 || !proto.Equal(seen[0], orig) {
			t.Fatal("the handler did not see the plaintext")
		}
	})
	t.Run("request crosses the wire sealed", func(t *testing.T) {
		t.Parallel()
		srv, cc := startEcho(t, serverConfig{}, clientSealing(s)...)
		if _, err := echo(testContext(t), cc, in); err != nil {
			t.Fatal(err)
		}
		seen := srv.last()
		if len(seen) != 1 {
			t.Fatal("handler not called")
		}
		assertSealedOnWire(t, seen[0], g.secrets)
	})
	t.Run("response crosses the wire sealed", func(t *testing.T) {
		t.Parallel()
		_, cc := startEcho(t, serverSealing(newSealer(t, ring)))
		out, err := echo(testContext(t), cc, proto.Clone(in).(*testpb.Envelope))
		if err != nil {
			t.Fatal(err)
		}
		assertSealedOnWire(t, out, g.secrets)
	})
	t.Run("alternating message types", func(t *testing.T) {
		t.Parallel()
		srv, cc := startEcho(t, serverConfig{}, clientSealing(s)...)
		for i := range 6 {
			if i%2 == 1 {
				if _, err := ping(testContext(t), cc, &testpb.Plain{Id: "p"}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, err := echo(testContext(t), cc, in); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range srv.last() {
			assertSealedOnWire(t, m, g.secrets)
		}
	})
	t.Run("message without secrets", func(t *testing.T) {
		t.Parallel()
		_, cc := startEcho(t, serverSealing(s), clientSealing(s)...)
		p := &testpb.Plain{Id: "p", Tags: []string{"a"}}
		out, err := ping(testContext(t), cc, p)
		if err != nil || !proto.Equal(out, p) {
			t.Fatalf("ping: %v %v", out, err)
		}
	})
}

func TestUnaryInterceptorRefusals(t *testing.T) {
	t.Parallel()
	ring := newRing(t, fields.DefaultKeyset, "billing")
	s := newSealer(t, ring)
	strict := newSealer(t, ring, fields.WithRequireSealed())
	stranger := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"))
	onlyDefault := newSealer(t, newRing(t, fields.DefaultKeyset))
	const secret = "do-not-leak-this"
	garbled := &testpb.Envelope{Token: "moat:v1:" + strings.Repeat("A", 60)}

	tests := []struct {
		name    string
		server  serverConfig
		client  []grpc.DialOption
		in      *testpb.Envelope
		want    codes.Code
		handled bool
	}{
		{name: "server lacks the key", server: serverSealing(stranger), client: clientSealing(s),
			in: &testpb.Envelope{Token: secret}, want: codes.FailedPrecondition},
		{name: "clear request to a strict server", server: serverSealing(strict),
			in: &testpb.Envelope{Token: secret}, want: codes.InvalidArgument},
		{name: "tampered request", server: serverSealing(s), in: garbled, want: codes.InvalidArgument},
		{name: "tampered response", server: serverConfig{reply: garbled}, client: clientSealing(s),
			in: &testpb.Envelope{Id: "x"}, want: codes.DataLoss, handled: true},
		{name: "client lacks a keyset", server: serverSealing(s), client: clientSealing(onlyDefault),
			in: &testpb.Envelope{OtherKey: secret}, want: codes.FailedPrecondition},
		{name: "server lacks a keyset to seal its response", server: func() serverConfig {
			c := serverSealing(onlyDefault)
			c.reply = &testpb.Envelope{OtherKey: secret}
			return c
		}(), in: &testpb.Envelope{Id: "x"}, want: codes.FailedPrecondition, handled: true},
		{name: "client forwards a field it cannot open", server: func() serverConfig {
			c := serverSealing(s)
			c.reply = &testpb.Envelope{OtherKey: secret}
			return c
		}(), client: clientSealing(onlyDefault), in: &testpb.Envelope{Id: "x"}, want: codes.OK,
			handled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, cc := startEcho(t, tt.server, tt.client...)
			_, err := echo(testContext(t), cc, tt.in)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
			if handled := len(srv.last()) > 0; handled != tt.handled {
				t.Fatalf("handler called = %v, want %v", handled, tt.handled)
			}
			assertNoLeak(t, err, secret, tt.in.GetToken())
			if err != nil && !strings.Contains(status.Convert(err).Message(), "moat.fieldstest.v1.") {
				t.Fatalf("status message %q does not name the message type", status.Convert(err).Message())
			}
		})
	}
}

func TestStreamInterceptors(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"), fields.WithRequireSealed())
	tests := []struct {
		name   string
		server serverConfig
		client []grpc.DialOption
		sealed bool // whether the handler sees ciphertext
	}{
		{name: "both sides seal", server: serverSealing(s), client: clientSealing(s)},
		{name: "stream crosses the wire sealed", client: clientSealing(s), sealed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, cc := startEcho(t, tt.server, tt.client...)
			st, err := chat(testContext(t), cc)
			if err != nil {
				t.Fatal(err)
			}
			g := newGen(5)
			var sent []proto.Message
			for range 5 {
				m := g.envelope()
				sent = append(sent, proto.Clone(m))
				if err := st.SendMsg(m); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(m, sent[len(sent)-1]) {
					t.Fatal("SendMsg changed the caller's message")
				}
				got := &testpb.Envelope{}
				if err := st.RecvMsg(got); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got, m) {
					t.Fatalf("stream echo differs:\n got %v\nwant %v", got, m)
				}
			}
			if err := st.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if err := st.RecvMsg(&testpb.Envelope{}); !errors.Is(err, io.EOF) {
				t.Fatalf("end of stream: %v", err)
			}
			seen := srv.last()
			for i, m := range seen {
				if tt.sealed {
					assertSealedOnWire(t, m, g.secrets)
				} else if !proto.Equal(m, sent[i]) {
					t.Fatal("handler did not see the plaintext")
				}
			}
		})
	}
}

func TestStreamInterceptorRefusal(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"))
	stranger := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"))
	_, cc := startEcho(t, serverSealing(stranger), clientSealing(s)...)
	st, err := chat(testContext(t), cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&testpb.Envelope{Token: "do-not-leak"}); err != nil {
		t.Fatal(err)
	}
	err = st.RecvMsg(&testpb.Envelope{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v", err)
	}
	assertNoLeak(t, err, "do-not-leak")
}

// TestInterceptorsCompose checks that the sealing and logging interceptors
// chain with others in either order.
func TestInterceptorsCompose(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"))
	var calls atomic.Int32
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		return h(ctx, req)
	}
	logger, _ := newLogBuffer()
	cl := fields.NewCallLogger(logger, fields.WithPayloads())
	sc := serverConfig{
		unary: []grpc.UnaryServerInterceptor{count, cl.UnaryServerInterceptor(),
			s.UnaryServerInterceptor(), count},
	}
	_, cc := startEcho(t, sc, grpc.WithChainUnaryInterceptor(cl.UnaryClientInterceptor(),
		s.UnaryClientInterceptor()))
	in := &testpb.Envelope{Token: "t", Inner: &testpb.Inner{Secret: "s"}}
	out, err := echo(testContext(t), cc, in)
	if err != nil || !proto.Equal(in, out) {
		t.Fatalf("echo: %v %v", out, err)
	}
	if calls.Load() != 2 {
		t.Fatalf("other interceptors ran %d times, want 2", calls.Load())
	}
}
