package broker

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// upperSealer stands in for field encryption: it changes the value of
// StringValue messages reversibly.
type upperSealer struct{ fail error }

func (s upperSealer) Seal(m proto.Message) error {
	if s.fail != nil {
		return s.fail
	}
	v := m.(*wrapperspb.StringValue)
	v.Value = "sealed:" + strings.ToUpper(v.Value)
	return nil
}

func (s upperSealer) Unseal(m proto.Message) error {
	v := m.(*wrapperspb.StringValue)
	v.Value = strings.ToLower(strings.TrimPrefix(v.Value, "sealed:"))
	return nil
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sealer   Sealer
		wantBody string
	}{
		{"without sealer", nil, "secret"},
		{"with sealer", upperSealer{}, "sealed:SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := wrapperspb.String("secret")
			msg, err := Encode(in, tt.sealer)
			if err != nil {
				t.Fatal(err)
			}
			if in.Value != "secret" {
				t.Errorf("Encode changed its argument: %q", in.Value)
			}
			var wire wrapperspb.StringValue
			if err := proto.Unmarshal(msg.Body, &wire); err != nil || wire.Value != tt.wantBody {
				t.Errorf("body holds %q (%v), want %q", wire.Value, err, tt.wantBody)
			}
			if msg.Header[HeaderMessageType] != "google.protobuf.StringValue" ||
				msg.Header[HeaderContentType] != ContentTypeProtobuf {
				t.Errorf("header %v", msg.Header)
			}
			var out wrapperspb.StringValue
			if err := Decode(msg, &out, tt.sealer); err != nil {
				t.Fatal(err)
			}
			if out.Value != "secret" {
				t.Errorf("decoded %q", out.Value)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	msg, err := Encode(wrapperspb.String("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Decode(msg, &wrapperspb.Int64Value{}, nil); !errors.Is(err, ErrWrongMessageType) {
		t.Errorf("wrong type: %v", err)
	}
	_, err = Encode(wrapperspb.String("x"), upperSealer{fail: errors.New("no key")})
	if err == nil || !strings.HasPrefix(err.Error(), "broker: seal") {
		t.Errorf("failing sealer: %v", err)
	}
	bad := &Message{Body: []byte{0xff}}
	if err := Decode(bad, &wrapperspb.StringValue{}, nil); err == nil {
		t.Error("garbage body decoded")
	}
}
