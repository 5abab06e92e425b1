package fields_test

import (
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	r := []byte(fields.Redacted)
	tests := []struct {
		name string
		in   proto.Message
		want proto.Message
	}{
		{
			name: "profile",
			in: &profilev1.GetProfileResponse{Profile: &profilev1.Profile{
				UserId: "u1", Name: "Ada", Phone: "+1", Email: "a@b",
				Address: &profilev1.Address{Street: "1 Main", City: "X", Country: "Y"},
			}},
			want: &profilev1.GetProfileResponse{Profile: &profilev1.Profile{
				UserId: "u1", Name: fields.Redacted, Phone: fields.Redacted, Email: fields.Redacted,
				Address: &profilev1.Address{Street: fields.Redacted, City: fields.Redacted, Country: fields.Redacted},
			}},
		},
		{
			name: "every shape",
			in: &testpb.Envelope{
				Id: "id", Token: "t", Blob: []byte("b"), Tokens: []string{"a", "b"},
				Blobs: [][]byte{[]byte("x")}, Secrets: map[string]string{"k": "v"},
				KeyedBlobs: map[int64][]byte{1: []byte("v")},
				Inner:      &testpb.Inner{Secret: "s", Label: "l", Child: &testpb.Inner{Raw: []byte("r")}},
				Inners:     []*testpb.Inner{{Secret: "s"}, {Label: "l"}},
				InnerMap:   map[string]*testpb.Inner{"m": {Secret: "s", Label: "l"}},
				Choice:     &testpb.Envelope_ChoiceSecret{ChoiceSecret: "c"},
				Maybe:      proto.String("m"), OtherKey: "o", Email: "e", Note: "n", Account: 7,
				Kind: testpb.Kind_KIND_B, PiiInner: &testpb.Inner{Label: "l"},
				Emails: []string{"a", "b"}, Scores: map[string]float64{"ada": 3.5},
			},
			want: &testpb.Envelope{
				Id: "id", Token: fields.Redacted, Blob: r, Tokens: []string{fields.Redacted, fields.Redacted},
				Blobs: [][]byte{r}, Secrets: map[string]string{"k": fields.Redacted},
				KeyedBlobs: map[int64][]byte{1: r},
				Inner: &testpb.Inner{Secret: fields.Redacted, Label: "l",
					Child: &testpb.Inner{Raw: r}},
				Inners:   []*testpb.Inner{{Secret: fields.Redacted}, {Label: "l"}},
				InnerMap: map[string]*testpb.Inner{"m": {Secret: fields.Redacted, Label: "l"}},
				Choice:   &testpb.Envelope_ChoiceSecret{ChoiceSecret: fields.Redacted},
				Maybe:    proto.String(fields.Redacted), OtherKey: fields.Redacted,
				Email: fields.Redacted, Note: fields.Redacted,
				Emails: []string{fields.Redacted, fields.Redacted}, Scores: map[string]float64{"ada": 0},
			},
		},
		{
			name: "oneof message",
			in:   &testpb.Envelope{Choice: &testpb.Envelope_ChoiceInner{ChoiceInner: &testpb.Inner{Secret: "s"}}},
			want: &testpb.Envelope{Choice: &testpb.Envelope_ChoiceInner{
				ChoiceInner: &testpb.Inner{Secret: fields.Redacted}}},
		},
		{
			name: "cycle",
			in:   &testpb.Link{Next: &testpb.Link{Leaf: &testpb.Leaf{Key: []byte("k")}}},
			want: &testpb.Link{Next: &testpb.Link{Leaf: &testpb.Leaf{Key: r}}},
		},
		{
			name: "nothing sensitive",
			in:   &testpb.Plain{Id: "x", Tags: []string{"t"}},
			want: &testpb.Plain{Id: "x", Tags: []string{"t"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := proto.Clone(tt.in)
			got := fields.Redact(tt.in)
			if !proto.Equal(got, tt.want) {
				t.Fatalf("Redact:\n got %v\nwant %v", got, tt.want)
			}
			if !proto.Equal(before, tt.in) {
				t.Fatal("Redact changed its input")
			}
		})
	}
	if fields.Redact(nil) != nil {
		t.Fatal("Redact(nil) != nil")
	}
}

func TestRedactSealed(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"))
	msg := newGen(3).envelope()
	msg.Token = "x"
	if err := s.Seal(msg); err != nil {
		t.Fatal(err)
	}
	if got := fields.Redact(msg).(*testpb.Envelope).GetToken(); got != fields.Redacted {
		t.Fatalf("sealed token redacted to %q", got)
	}
}

func TestRedactMetadata(t *testing.T) {
	t.Parallel()
	md := metadata.Pairs(
		"authorization", "Bearer abc",
		"cookie", "sid=1",
		"x-session-token", "t",
		"x-my-Secret-thing", "s",
		"user-password", "p",
		"trace-bin", "\x00\x01",
		"x-request-id", "r1",
		"user-agent", "grpc-go",
		":authority", "svc.example:443",
		"x-auth-user", "u",
	)
	got := fields.RedactMetadata(md)
	tests := []struct {
		name string
		key  string
		want string
	}{
		{name: "authorization", key: "authorization", want: fields.Redacted},
		{name: "cookie", key: "cookie", want: fields.Redacted},
		{name: "session token", key: "x-session-token", want: fields.Redacted},
		{name: "secret in name", key: "x-my-secret-thing", want: fields.Redacted},
		{name: "password in name", key: "user-password", want: fields.Redacted},
		{name: "binary", key: "trace-bin", want: fields.Redacted},
		{name: "request id", key: "x-request-id", want: "r1"},
		{name: "user agent", key: "user-agent", want: "grpc-go"},
		{name: "authority", key: ":authority", want: "svc.example:443"},
		{name: "x-auth", key: "x-auth-user", want: fields.Redacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if v := got.Get(tt.key); len(v) != 1 || v[0] != tt.want {
				t.Fatalf("%s = %v, want %q", tt.key, v, tt.want)
			}
		})
	}
	if md.Get("authorization")[0] != "Bearer abc" {
		t.Fatal("RedactMetadata changed its input")
	}
}

func TestRedactDropsUnknownFields(t *testing.T) {
	t.Parallel()
	p := &profilev1.Profile{UserId: "u1", Name: "n"}
	unknown := protowire.AppendTag(nil, 99, protowire.BytesType)
	unknown = protowire.AppendString(unknown, "newer-schema-pii")
	p.ProtoReflect().SetUnknown(unknown)
	got := fields.Redact(p)
	if len(got.ProtoReflect().GetUnknown()) != 0 {
		t.Fatal("unknown fields kept in the redacted copy")
	}
	if len(p.ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("Redact changed its input")
	}
}
