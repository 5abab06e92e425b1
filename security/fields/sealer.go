package fields

import (
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// KeysetPolicy says what a [Sealer] does with a sealed field whose keyset
// it does not hold.
type KeysetPolicy int

const (
	// Forward leaves the ciphertext as it is, so a service that relays a
	// message it cannot read passes SECRET fields on unchanged. This is
	// the default.
	Forward KeysetPolicy = iota
	// Refuse fails the unseal with [KindMissingKeyset].
	Refuse
)

// SealerOption configures [NewSealer].
type SealerOption interface{ applySealer(*sealerOptions) }

type sealerOptionFunc func(*sealerOptions)

func (f sealerOptionFunc) applySealer(o *sealerOptions) { f(o) }

type sealerOptions struct {
	missing       KeysetPolicy
	requireSealed bool
}

// WithMissingKeyset sets what Unseal does with a sealed field whose keyset
// is not in the keyring: [Forward] (the default) or [Refuse]. Seal always
// refuses to leave a clear SECRET value unsealed for want of its keyset.
func WithMissingKeyset(p KeysetPolicy) SealerOption {
	return sealerOptionFunc(func(o *sealerOptions) { o.missing = p })
}

// WithRequireSealed makes Unseal refuse a non-empty SECRET field that
// arrives in clear ([KindNotSealed]). Without it such a value is accepted
// as it is, which eases a gradual roll-out; production services whose
// peers all seal should set it.
func WithRequireSealed() SealerOption {
	return sealerOptionFunc(func(o *sealerOptions) { o.requireSealed = true })
}

// Sealer seals and unseals the SECRET fields of protobuf messages with the
// keysets of a [Keyring]. It is safe for concurrent use; keysets reloaded
// by the keyring take effect at the next call.
type Sealer struct {
	ring *Keyring
	opts sealerOptions
}

// NewSealer returns a Sealer that uses ring's keysets.
func NewSealer(ring *Keyring, opts ...SealerOption) (*Sealer, error) {
	if ring == nil {
		return nil, &Error{Kind: KindMissingKeyset,
			Detail: "no keyring: load one with LoadKeyring or NewKeyring"}
	}
	s := &Sealer{ring: ring}
	for _, o := range opts {
		o.applySealer(&s.opts)
	}
	if s.opts.missing != Forward && s.opts.missing != Refuse {
		return nil, &Error{Kind: KindMissingKeyset, Detail: "unknown KeysetPolicy"}
	}
	return s, nil
}

// Seal encrypts, in place, every non-empty SECRET field of msg at any
// depth: singular, repeated, map values and oneof members, in nested
// messages too. A value already sealed is left as it is. Empty values stay
// empty. On error msg may be partly sealed and should be dropped.
//
// Seal costs one map lookup for message types without SECRET fields.
func (s *Sealer) Seal(msg proto.Message) error {
	if msg == nil {
		return nil
	}
	m := msg.ProtoReflect()
	return s.seal(m, planFor(m.Descriptor()))
}

func (s *Sealer) seal(m protoreflect.Message, p *plan) error {
	if (len(p.seal) == 0 && p.err == nil) || !m.IsValid() {
		return nil
	}
	return s.walk(m, p, (*Sealer).sealValue)
}

// Unseal decrypts, in place, every sealed SECRET field of msg at any
// depth. A sealed field whose keyset is missing is left sealed or refused
// (see [WithMissingKeyset]); a clear field is kept or refused (see
// [WithRequireSealed]). On error msg may be partly unsealed and should be
// dropped. Unseal never panics, whatever msg holds.
func (s *Sealer) Unseal(msg proto.Message) error {
	if msg == nil {
		return nil
	}
	m := msg.ProtoReflect()
	return s.unseal(m, planFor(m.Descriptor()))
}

func (s *Sealer) unseal(m protoreflect.Message, p *plan) error {
	if (len(p.seal) == 0 && p.err == nil) || !m.IsValid() {
		return nil
	}
	return s.walk(m, p, (*Sealer).unsealValue)
}

// NeedsSealing reports whether messages of msg's type have SECRET fields
// at any depth, so that callers can skip copying those that do not.
func NeedsSealing(msg proto.Message) bool {
	if msg == nil {
		return false
	}
	return planFor(msg.ProtoReflect().Descriptor()).sealing()
}

// sealing reports whether the plan's type has anything to seal, or a
// mark that makes sealing fail.
func (p *plan) sealing() bool { return len(p.seal) > 0 || p.err != nil }

// valueFunc seals or unseals one value of a step's field.
type valueFunc func(s *Sealer, st *step, v protoreflect.Value) (protoreflect.Value, error)

func (s *Sealer) walk(m protoreflect.Message, p *plan, f valueFunc) error {
	if p.err != nil {
		return p.err
	}
	for i := range p.seal {
		st := &p.seal[i]
		if !m.Has(st.fd) {
			continue
		}
		var err error
		switch {
		case st.descend:
			err = s.descend(m, st, f)
		case st.fd.IsList():
			l := m.Mutable(st.fd).List()
			for j := range l.Len() {
				v, ferr := f(s, st, l.Get(j))
				if ferr != nil {
					return ferr
				}
				l.Set(j, v)
			}
		case st.fd.IsMap():
			err = mapValues(m.Mutable(st.fd).Map(), func(v protoreflect.Value) (protoreflect.Value, error) {
				return f(s, st, v)
			})
		default:
			var v protoreflect.Value
			if v, err = f(s, st, m.Get(st.fd)); err == nil {
				m.Set(st.fd, v)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// descend walks the messages a field holds.
func (s *Sealer) descend(m protoreflect.Message, st *step, f valueFunc) error {
	sub := planFor(messageOf(st.fd))
	switch {
	case st.fd.IsList():
		l := m.Get(st.fd).List()
		for j := range l.Len() {
			if err := s.walk(l.Get(j).Message(), sub, f); err != nil {
				return err
			}
		}
	case st.fd.IsMap():
		var err error
		m.Get(st.fd).Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
			err = s.walk(v.Message(), sub, f)
			return err == nil
		})
		return err
	default:
		return s.walk(m.Get(st.fd).Message(), sub, f)
	}
	return nil
}

// mapValues replaces every value of mp by f's result. Keys are kept.
func mapValues(mp protoreflect.Map, f func(protoreflect.Value) (protoreflect.Value, error)) error {
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	for _, k := range keys {
		v, err := f(mp.Get(k))
		if err != nil {
			return err
		}
		mp.Set(k, v)
	}
	return nil
}

func (s *Sealer) sealValue(st *step, v protoreflect.Value) (protoreflect.Value, error) {
	isBytes := valueKind(st.fd) == protoreflect.BytesKind
	var pt []byte
	if isBytes {
		pt = v.Bytes()
		if len(pt) == 0 || sealedBytes(pt) {
			return v, nil
		}
	} else {
		str := v.String()
		if str == "" || sealedText(str) {
			return v, nil
		}
		pt = []byte(str)
	}
	ks := s.ring.Keyset(st.keyset)
	if ks == nil {
		return v, fieldError(KindMissingKeyset, st.fd, st.keyset,
			"no such keyset here, and a SECRET value is never sent in clear")
	}
	ct, err := ks.aead.Encrypt(pt, st.ad)
	if err != nil {
		return v, fieldError(KindSealFailed, st.fd, st.keyset, "encryption failed")
	}
	if isBytes {
		return protoreflect.ValueOfBytes(encodeBytes(ct)), nil
	}
	return protoreflect.ValueOfString(encodeText(ct)), nil
}

func (s *Sealer) unsealValue(st *step, v protoreflect.Value) (protoreflect.Value, error) {
	isBytes := valueKind(st.fd) == protoreflect.BytesKind
	var (
		ct  []byte
		err error
	)
	if isBytes {
		b := v.Bytes()
		if len(b) == 0 {
			return v, nil
		}
		if !looksSealedBytes(b) {
			return v, s.clear(st)
		}
		ct, err = decodeBytes(b)
	} else {
		str := v.String()
		if str == "" {
			return v, nil
		}
		if !looksSealedText(str) {
			return v, s.clear(st)
		}
		ct, err = decodeText(str)
	}
	if err == nil {
		err = checkTink(ct)
	}
	if err != nil {
		return v, envelopeFieldError(err, st)
	}
	ks := s.ring.Keyset(st.keyset)
	if ks == nil {
		if s.opts.missing == Forward {
			return v, nil
		}
		return v, fieldError(KindMissingKeyset, st.fd, st.keyset,
			"no such keyset here to unseal the field")
	}
	if id := keyID(ct); !ks.Enabled(id) {
		e := fieldError(KindUnknownKey, st.fd, st.keyset, "sealed with a key this keyset does not hold")
		e.KeyID = id
		return v, e
	}
	pt, err := ks.aead.Decrypt(ct, st.ad)
	if err != nil {
		return v, fieldError(KindCannotDecrypt, st.fd, st.keyset,
			"cannot decrypt: the value was altered, moved from another field, "+
				"or sealed with other key material")
	}
	if isBytes {
		return protoreflect.ValueOfBytes(pt), nil
	}
	if !utf8.Valid(pt) {
		return v, fieldError(KindMalformed, st.fd, st.keyset, "plaintext is not valid UTF-8")
	}
	return protoreflect.ValueOfString(string(pt)), nil
}

// clear decides about a SECRET value that arrived in clear.
func (s *Sealer) clear(st *step) error {
	if !s.opts.requireSealed {
		return nil
	}
	return fieldError(KindNotSealed, st.fd, st.keyset, "arrived in clear but must be sealed")
}

func envelopeFieldError(err error, st *step) error {
	ee, ok := err.(*envelopeError)
	if !ok {
		return fieldError(KindMalformed, st.fd, st.keyset, "malformed envelope")
	}
	return fieldError(ee.kind, st.fd, st.keyset, ee.detail)
}
