package fields

import (
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Redacted replaces sensitive string values in redacted copies; sensitive
// bytes values become its bytes.
const Redacted = "[REDACTED]"

var redactedBytes = []byte(Redacted)

// Redact returns a copy of msg in which every field marked PII, SECRET or
// debug_redact, at any depth, is replaced: strings by [Redacted], bytes by
// its bytes, numbers, bools and enums by zero, messages by nothing.
// Repeated fields keep their length and maps their keys (map keys are never
// redacted: keep sensitive data out of them). Sealed values are redacted
// too. Unknown fields are dropped from every message Redact walks.
//
// When msg's type has no such field at any depth, Redact returns msg
// itself without copying: treat the result as read-only. Redact is safe
// for concurrent use as long as msg is not being modified.
func Redact(msg proto.Message) proto.Message {
	if msg == nil {
		return nil
	}
	m := msg.ProtoReflect()
	p := planFor(m.Descriptor())
	if len(p.redact) == 0 || !m.IsValid() {
		return msg
	}
	c := proto.Clone(msg)
	redact(c.ProtoReflect(), p)
	return c
}

func redact(m protoreflect.Message, p *plan) {
	// Unknown fields may be sensitive fields of a newer schema.
	m.SetUnknown(nil)
	for i := range p.redact {
		st := &p.redact[i]
		fd := st.fd
		if !m.Has(fd) {
			continue
		}
		switch {
		case st.descend:
			sub := planFor(messageOf(fd))
			switch {
			case fd.IsList():
				l := m.Get(fd).List()
				for j := range l.Len() {
					redact(l.Get(j).Message(), sub)
				}
			case fd.IsMap():
				m.Get(fd).Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
					redact(v.Message(), sub)
					return true
				})
			default:
				redact(m.Get(fd).Message(), sub)
			}
		case fd.IsList():
			if messageOf(fd) != nil {
				m.Clear(fd)
				continue
			}
			l := m.Mutable(fd).List()
			for j := range l.Len() {
				l.Set(j, redactedValue(fd))
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			_ = mapValues(mp, func(protoreflect.Value) (protoreflect.Value, error) {
				if messageOf(fd) != nil {
					return mp.NewValue(), nil
				}
				return redactedValue(fd.MapValue()), nil
			})
		case messageOf(fd) != nil:
			m.Clear(fd)
		default:
			m.Set(fd, redactedValue(fd))
		}
	}
}

// redactedValue is what replaces one scalar value of fd.
func redactedValue(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(Redacted)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(redactedBytes)
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(false)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(0)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(0)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(0)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(0)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(0)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(0)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(0)
	}
	return protoreflect.Value{}
}

// sensitiveHeaders are metadata keys whose values are always redacted.
var sensitiveHeaders = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
	"set-cookie":          true,
	"x-api-key":           true,
	"x-session-token":     true,
}

// sensitiveWords make any metadata key that contains them sensitive.
var sensitiveWords = []string{"token", "secret", "password", "passwd", "credential",
	"session", "authorization", "cookie", "api-key", "apikey", "x-auth"}

// SensitiveMetadataKey reports whether values of the gRPC metadata key are
// redacted from logs: authorization, cookie, x-session-token, and any key
// containing "token", "secret", "password", "session", "authorization",
// "cookie", "credential", "api-key" or "x-auth", in any case. Binary
// ("-bin") keys are always redacted.
func SensitiveMetadataKey(key string) bool {
	k := strings.ToLower(key)
	if sensitiveHeaders[k] || strings.HasSuffix(k, "-bin") {
		return true
	}
	for _, w := range sensitiveWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// RedactMetadata returns a copy of md whose sensitive values (see
// [SensitiveMetadataKey]) are replaced by [Redacted].
func RedactMetadata(md metadata.MD) metadata.MD {
	out := make(metadata.MD, len(md))
	for k, vs := range md {
		if !SensitiveMetadataKey(k) {
			out[k] = append([]string(nil), vs...)
			continue
		}
		r := make([]string, len(vs))
		for i := range r {
			r[i] = Redacted
		}
		out[k] = r
	}
	return out
}
