package fields_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

const benchSecret = "a-session-token-of-forty-bytes-or-so-123"

// BenchmarkSealUnseal seals and unseals one SECRET field, the shape of
// moat's example auth and profile requests.
func BenchmarkSealUnseal(b *testing.B) {
	s := newSealer(b, newRing(b, fields.DefaultKeyset))
	b.Run("LoginRequest", func(b *testing.B) {
		m := &authv1.LoginRequest{Username: "ada"}
		b.ReportAllocs()
		for b.Loop() {
			m.Password = benchSecret
			if err := s.Seal(m); err != nil {
				b.Fatal(err)
			}
			if err := s.Unseal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetProfileRequest", func(b *testing.B) {
		m := &profilev1.GetProfileRequest{}
		b.ReportAllocs()
		for b.Loop() {
			m.SessionToken = benchSecret
			if err := s.Seal(m); err != nil {
				b.Fatal(err)
			}
			if err := s.Unseal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMarshal is proto.Marshal of the same message, for scale.
func BenchmarkMarshal(b *testing.B) {
	m := &authv1.LoginRequest{Username: "ada", Password: benchSecret}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawAESGCM seals and opens the same bytes with crypto/aes and
// crypto/cipher directly: the floor under Tink and the envelope.
func BenchmarkRawAESGCM(b *testing.B) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	pt := []byte(benchSecret)
	ad := []byte("moat.fields.v1|default|moat.example.auth.v1.LoginRequest|2")
	nonce := make([]byte, gcm.NonceSize())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rand.Read(nonce); err != nil {
			b.Fatal(err)
		}
		ct := gcm.Seal(nil, nonce, pt, ad)
		if _, err := gcm.Open(nil, nonce, ct, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNoSensitiveFields is the cost for a message type without any
// sensitive field: the target is under 50 ns and no allocation.
func BenchmarkNoSensitiveFields(b *testing.B) {
	s := newSealer(b, newRing(b, fields.DefaultKeyset))
	m := &testpb.Plain{Id: "x", Count: 3, Tags: []string{"a"}, Child: &testpb.PlainChild{Name: "n"}}
	ctx := context.Background()
	// Compute the plan once, as the first call of a process does.
	_ = s.Seal(m)
	b.Run("Seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Seal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unseal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Unseal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Redact", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = fields.Redact(m)
		}
	})
	b.Run("UnaryServerInterceptor", func(b *testing.B) {
		ic := s.UnaryServerInterceptor()
		info := &grpc.UnaryServerInfo{FullMethod: "/moat.fieldstest.v1.EchoService/Ping"}
		h := func(_ context.Context, req any) (any, error) { return req, nil }
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ic(ctx, m, info, h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("UnaryServerInterceptorTwoTypes", func(b *testing.B) {
		ic := s.UnaryServerInterceptor()
		info := &grpc.UnaryServerInfo{FullMethod: "/moat.fieldstest.v1.EchoService/Ping"}
		h := func(_ context.Context, req any) (any, error) { return req, nil }
		other := &testpb.PlainChild{Name: "n"}
		_ = s.Seal(other)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var req any = m
			if i%2 == 1 {
				req = other
			}
			if _, err := ic(ctx, req, info, h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("UnaryClientInterceptor", func(b *testing.B) {
		ic := s.UnaryClientInterceptor()
		reply := &testpb.Plain{}
		inv := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			return nil
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := ic(ctx, "/moat.fieldstest.v1.EchoService/Ping", m, reply, nil, inv); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUnaryServerInterceptor is the server interceptor on the login
// request: unseal the request, seal a copy of the response.
func BenchmarkUnaryServerInterceptor(b *testing.B) {
	s := newSealer(b, newRing(b, fields.DefaultKeyset))
	ic := s.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/moat.example.auth.v1.AuthService/Login"}
	resp := &authv1.LoginResponse{SessionToken: benchSecret, UserId: "u1"}
	h := func(context.Context, any) (any, error) { return resp, nil }
	sealed := &authv1.LoginRequest{Username: "ada", Password: benchSecret}
	if err := s.Seal(sealed); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req := &authv1.LoginRequest{Username: "ada", Password: sealed.GetPassword()}
		if _, err := ic(ctx, req, info, h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedact redacts a full profile response: every field but the
// user id is PII.
func BenchmarkRedact(b *testing.B) {
	m := &profilev1.GetProfileResponse{Profile: &profilev1.Profile{
		UserId: "u1", Name: "Ada Lovelace", Phone: "+44 20 0000 0000", Email: "ada@example.org",
		Address: &profilev1.Address{Street: "12 St James's Square", City: "London",
			PostalCode: "SW1Y 4JH", Country: "UK"},
	}}
	b.ReportAllocs()
	for b.Loop() {
		_ = fields.Redact(m)
	}
}
