package fields_test

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

// refusals are the kinds a tampered value may be refused with.
var refusals = []fields.Kind{fields.KindCannotDecrypt, fields.KindMalformed, fields.KindUnknownKey}

func TestTamperedValuesAreRefused(t *testing.T) {
	t.Parallel()
	ring := newRing(t, fields.DefaultKeyset, "billing")
	s := newSealer(t, ring)
	const plaintext = "the-plaintext-secret"
	sealed := &testpb.Envelope{
		Token:    plaintext,
		Maybe:    proto.String(plaintext + "-2"),
		Blob:     []byte(plaintext),
		OtherKey: plaintext + "-3",
		Inner:    &testpb.Inner{Secret: plaintext + "-4"},
	}
	if err := s.Seal(sealed); err != nil {
		t.Fatal(err)
	}
	token, blob := sealed.GetToken(), sealed.GetBlob()
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, "moat:v1:"))
	if err != nil {
		t.Fatal(err)
	}
	text := func(ct []byte) string { return "moat:v1:" + base64.RawURLEncoding.EncodeToString(ct) }

	otherRing := newRing(t, fields.DefaultKeyset)
	foreign := &testpb.Envelope{Token: plaintext}
	if err := newSealer(t, otherRing).Seal(foreign); err != nil {
		t.Fatal(err)
	}
	twin := &testpb.Twin{Secret: plaintext}
	if err := s.Seal(twin); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		msg  proto.Message
		want []fields.Kind
	}{
		{name: "swapped fields", msg: &testpb.Envelope{Token: sealed.GetMaybe()},
			want: []fields.Kind{fields.KindCannotDecrypt}},
		{name: "swapped keysets", msg: &testpb.Envelope{Token: sealed.GetOtherKey()}},
		{name: "moved into a nested message", msg: &testpb.Envelope{Inner: &testpb.Inner{Secret: token}},
			want: []fields.Kind{fields.KindCannotDecrypt}},
		{name: "swapped message types", msg: &testpb.Inner{Secret: twin.GetSecret()},
			want: []fields.Kind{fields.KindCannotDecrypt}},
		{name: "swapped message types back", msg: &testpb.Twin{Secret: sealed.GetInner().GetSecret()},
			want: []fields.Kind{fields.KindCannotDecrypt}},
		{name: "foreign keyset", msg: &testpb.Envelope{Token: foreign.GetToken()},
			want: []fields.Kind{fields.KindUnknownKey}},
		{name: "unknown version", msg: &testpb.Envelope{Token: "moat:v2:" + token[8:]},
			want: []fields.Kind{fields.KindMalformed}},
		{name: "bad base64", msg: &testpb.Envelope{Token: token[:20] + "*" + token[21:]},
			want: []fields.Kind{fields.KindMalformed}},
		{name: "prefix only", msg: &testpb.Envelope{Token: "moat:v1:"},
			want: []fields.Kind{fields.KindMalformed}},
		{name: "bytes envelope version", msg: &testpb.Envelope{Blob: append([]byte("\x00moat\x02"), blob[6:]...)},
			want: []fields.Kind{fields.KindMalformed}},
		{name: "bytes envelope magic only", msg: &testpb.Envelope{Blob: []byte("\x00moat")},
			want: []fields.Kind{fields.KindMalformed}},
		{name: "bytes in string field", msg: &testpb.Envelope{Token: text(blob[6:])},
			want: []fields.Kind{fields.KindCannotDecrypt}},
		{name: "string in bytes field", msg: &testpb.Envelope{Blob: append([]byte("\x00moat\x01"), raw...)},
			want: []fields.Kind{fields.KindCannotDecrypt}},
		{name: "not tink prefix", msg: &testpb.Envelope{Token: text(append([]byte{0}, raw[1:]...))},
			want: []fields.Kind{fields.KindMalformed}},
	}
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			ct := slices.Clone(raw)
			ct[i] ^= bit
			tests = append(tests, struct {
				name string
				msg  proto.Message
				want []fields.Kind
			}{name: "flipped bit", msg: &testpb.Envelope{Token: text(ct)}})
		}
	}
	for n := range len(raw) {
		tests = append(tests, struct {
			name string
			msg  proto.Message
			want []fields.Kind
		}{name: "truncated", msg: &testpb.Envelope{Token: text(raw[:n])}})
		tests = append(tests, struct {
			name string
			msg  proto.Message
			want []fields.Kind
		}{name: "truncated bytes", msg: &testpb.Envelope{Blob: blob[:len(binPrefix)+n]}})
	}
	tests = append(tests, struct {
		name string
		msg  proto.Message
		want []fields.Kind
	}{name: "extended", msg: &testpb.Envelope{Token: text(append(slices.Clone(raw), 0))}})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.Unseal(tt.msg)
			want := tt.want
			if want == nil {
				want = refusals
			}
			var fe *fields.Error
			if !errorsAs(err, &fe) || !slices.Contains(want, fe.Kind) {
				t.Fatalf("err = %v, want one of %v", err, want)
			}
			assertNoLeak(t, err, plaintext, token, string(blob), base64.RawURLEncoding.EncodeToString(raw[5:]))
		})
	}
}

const binPrefix = "\x00moat\x01"

func TestRefusalCarriesPlace(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset))
	a := &authv1.LoginRequest{Password: "pw"}
	if err := s.Seal(a); err != nil {
		t.Fatal(err)
	}
	err := s.Unseal(&authv1.ValidateRequest{SessionToken: a.GetPassword()})
	var fe *fields.Error
	if !errorsAs(err, &fe) {
		t.Fatalf("err = %v", err)
	}
	if fe.Message != "moat.example.auth.v1.ValidateRequest" || fe.Field != 1 || fe.Keyset != "default" {
		t.Fatalf("error place = %s %d %q", fe.Message, fe.Field, fe.Keyset)
	}
	want := `fields: moat.example.auth.v1.ValidateRequest field 1: keyset "default": cannot decrypt`
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("message = %q", err)
	}
}
