package rpc

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// go-micro's gRPC client may send messages as JSON, with content-subtype
// "json" (content-type application/grpc+json). moat servers accept it so
// that such clients reach the same handlers; the codec is registered for
// the whole process unless a program registered its own first.
func init() {
	if encoding.GetCodec(jsonCodec{}.Name()) == nil && encoding.GetCodecV2(jsonCodec{}.Name()) == nil {
		encoding.RegisterCodec(jsonCodec{})
	}
}

// jsonCodec encodes protobuf messages as protobuf's canonical JSON.
type jsonCodec struct{}

func (jsonCodec) Name() string { return "json" }

func (jsonCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rpc: json codec: %T is not a protobuf message", v)
	}
	return protojson.Marshal(m)
}

func (jsonCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("rpc: json codec: %T is not a protobuf message", v)
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
}
