package fields

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Kind classifies why a field could not be sealed or unsealed, or why a
// keyset was refused. Kinds are stable strings, fit for metrics labels and
// audit events.
type Kind string

// Kinds of [Error].
const (
	// KindMalformed: the value carries moat's envelope prefix but is not a
	// well-formed envelope (unknown version, bad encoding, truncated).
	KindMalformed Kind = "malformed"
	// KindCannotDecrypt: authentication failed. The ciphertext was altered,
	// moved from another field or message type, or sealed with key material
	// that shares a key id with the local keyset.
	KindCannotDecrypt Kind = "cannot_decrypt"
	// KindUnknownKey: the envelope names a key id that the local keyset
	// does not hold (removed, disabled, or not yet distributed).
	KindUnknownKey Kind = "unknown_key"
	// KindMissingKeyset: the field's keyset is not configured here; see
	// [WithMissingKeyset].
	KindMissingKeyset Kind = "missing_keyset"
	// KindNotSealed: a SECRET field arrived in clear while
	// [WithRequireSealed] is set.
	KindNotSealed Kind = "not_sealed"
	// KindUnsupported: a field is marked SECRET but its type cannot hold
	// ciphertext (only string and bytes fields, alone, repeated or as map
	// values, can be sealed).
	KindUnsupported Kind = "unsupported"
	// KindBadKeyset: a keyset or keyset file was refused.
	KindBadKeyset Kind = "bad_keyset"
	// KindSealFailed: encryption itself failed.
	KindSealFailed Kind = "seal_failed"
)

// Error is the error returned for a field that cannot be sealed or
// unsealed, and for a refused keyset. Callers branch on Kind with
// [errors.As] or on the sentinels ([ErrCannotDecrypt], ...) with
// [errors.Is]. The message names the message type, the field number, the
// keyset and the key id where known; it never holds a field's plaintext or
// ciphertext, nor key material.
type Error struct {
	Kind Kind
	// Message is the full name of the message type that holds the field.
	Message protoreflect.FullName
	// Field is the number of the field within Message.
	Field protoreflect.FieldNumber
	// Keyset names the keyset the field is sealed with.
	Keyset string
	// KeyID is the key id an envelope named, for KindUnknownKey.
	KeyID uint32
	// Path is the keyset file, for KindBadKeyset.
	Path string
	// Detail explains the problem and, where there is one, the fix.
	Detail string
	// Err is the underlying error, if any. It never carries secret data.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("fields: ")
	if e.Message != "" {
		b.WriteString(string(e.Message))
		b.WriteString(" field ")
		b.WriteString(strconv.Itoa(int(e.Field)))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString("keyset file ")
		b.WriteString(strconv.Quote(e.Path))
		b.WriteString(": ")
	} else if e.Keyset != "" {
		b.WriteString("keyset ")
		b.WriteString(strconv.Quote(e.Keyset))
		b.WriteString(": ")
	}
	b.WriteString(e.Detail)
	if e.Kind == KindUnknownKey {
		b.WriteString(" (key id ")
		b.WriteString(strconv.FormatUint(uint64(e.KeyID), 10))
		b.WriteString(")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's kind, so that
// errors.Is(err, fields.ErrUnknownKey) holds for any field.
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinel)
	return ok && s.kind == e.Kind
}

type sentinel struct{ kind Kind }

func (s *sentinel) Error() string { return "fields: " + string(s.kind) }

// Sentinels matched by [errors.Is] against any [*Error] of the same kind.
var (
	ErrMalformed     error = &sentinel{KindMalformed}
	ErrCannotDecrypt error = &sentinel{KindCannotDecrypt}
	ErrUnknownKey    error = &sentinel{KindUnknownKey}
	ErrMissingKeyset error = &sentinel{KindMissingKeyset}
	ErrNotSealed     error = &sentinel{KindNotSealed}
	ErrUnsupported   error = &sentinel{KindUnsupported}
	ErrBadKeyset     error = &sentinel{KindBadKeyset}
	ErrSealFailed    error = &sentinel{KindSealFailed}
)

// fieldError builds the error of one field.
func fieldError(k Kind, fd protoreflect.FieldDescriptor, keyset, detail string) *Error {
	return &Error{
		Kind:    k,
		Message: fd.ContainingMessage().FullName(),
		Field:   fd.Number(),
		Keyset:  keyset,
		Detail:  detail,
	}
}
