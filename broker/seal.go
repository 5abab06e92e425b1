package broker

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Header keys set by [Encode].
const (
	// HeaderContentType is "application/protobuf" for encoded messages.
	HeaderContentType = "Content-Type"
	// HeaderMessageType is the full protobuf name of the body's type.
	HeaderMessageType = "Moat-Message-Type"
)

// ContentTypeProtobuf is the content type of protobuf bodies.
const ContentTypeProtobuf = "application/protobuf"

// Sealer encrypts and decrypts, in place, the fields of a message marked
// sensitive, so that they stay ciphertext in the broker's storage and in
// every hop that is not meant to read them. Implementations must be safe
// for concurrent use.
type Sealer interface {
	// Seal replaces the sensitive fields of m by their ciphertext.
	Seal(m proto.Message) error
	// Unseal replaces the ciphertext in m's sensitive fields by their
	// plaintext, leaving fields it has no key for as they are.
	Unseal(m proto.Message) error
}

// Encode marshals m into a [Message], sealing a copy of it first when s is
// not nil; m itself is not modified. The header names the content type and
// the message type.
func Encode(m proto.Message, s Sealer) (*Message, error) {
	name := string(m.ProtoReflect().Descriptor().FullName())
	if s != nil {
		m = proto.Clone(m)
		if err := s.Seal(m); err != nil {
			return nil, fmt.Errorf("broker: seal %s: %w", name, err)
		}
	}
	body, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("broker: marshal %s: %w", name, err)
	}
	return &Message{
		Header: map[string]string{
			HeaderContentType: ContentTypeProtobuf,
			HeaderMessageType: name,
		},
		Body: body,
	}, nil
}

// Decode unmarshals msg's body into m and unseals it when s is not nil. It
// fails with [ErrWrongMessageType] when the header names another type.
func Decode(msg *Message, m proto.Message, s Sealer) error {
	want := string(m.ProtoReflect().Descriptor().FullName())
	if got, ok := msg.Header[HeaderMessageType]; ok && got != want {
		return fmt.Errorf("%w: event holds %s, not %s", ErrWrongMessageType, got, want)
	}
	if err := proto.Unmarshal(msg.Body, m); err != nil {
		return fmt.Errorf("broker: unmarshal %s: %w", want, err)
	}
	if s != nil {
		if err := s.Unseal(m); err != nil {
			return fmt.Errorf("broker: unseal %s: %w", want, err)
		}
	}
	return nil
}
