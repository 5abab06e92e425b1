package fields_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

// TestNilMessagesInside checks that nil elements, map values and oneof
// members, which Go code can build but the wire cannot carry, never panic.
func TestNilMessagesInside(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"))
	tests := []struct {
		name string
		msg  proto.Message
	}{
		{name: "nil list element", msg: &testpb.Envelope{Inners: []*testpb.Inner{nil, {Secret: "s"}}}},
		{name: "nil map value", msg: &testpb.Envelope{InnerMap: map[string]*testpb.Inner{"a": nil}}},
		{name: "nil oneof member", msg: &testpb.Envelope{Choice: &testpb.Envelope_ChoiceInner{}}},
		{name: "nil nested", msg: &testpb.Envelope{Inner: nil, PiiInner: nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_ = s.Seal(tt.msg)
			_ = s.Unseal(tt.msg)
			_ = fields.Redact(tt.msg)
		})
	}
}
