package fields_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

func TestRoundTripRandomMessages(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"), fields.WithRequireSealed())
	for seed := range uint64(300) {
		g := newGen(seed)
		orig := g.envelope()
		msg := proto.Clone(orig)
		if err := s.Seal(msg); err != nil {
			t.Fatalf("seed %d: seal: %v", seed, err)
		}
		wire, err := proto.Marshal(msg)
		if err != nil {
			t.Fatalf("seed %d: marshal sealed: %v", seed, err)
		}
		for _, pt := range g.secrets {
			if bytes.Contains(wire, []byte(pt)) {
				t.Fatalf("seed %d: sealed message holds a plaintext", seed)
			}
		}
		if len(g.secrets) > 0 && proto.Equal(orig, msg) {
			t.Fatalf("seed %d: sealing changed nothing", seed)
		}
		got := msg.(*testpb.Envelope)
		if got.GetId() != orig.GetId() || got.GetEmail() != orig.GetEmail() {
			t.Fatalf("seed %d: sealing changed a field that is not SECRET", seed)
		}
		back := &testpb.Envelope{}
		if err := proto.Unmarshal(wire, back); err != nil {
			t.Fatal(err)
		}
		if err := s.Unseal(back); err != nil {
			t.Fatalf("seed %d: unseal: %v", seed, err)
		}
		if !proto.Equal(orig, back) {
			t.Fatalf("seed %d: round trip differs:\n got %v\nwant %v", seed, back, orig)
		}
	}
}

func TestSealExampleMessages(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset))
	tests := []struct {
		name   string
		msg    proto.Message
		sealed func(proto.Message) []string // values that must be sealed
		clear  func(proto.Message) []string // values that must stay
	}{
		{
			name: "login request",
			msg:  &authv1.LoginRequest{Username: "ada", Password: "hunter2"},
			sealed: func(m proto.Message) []string {
				return []string{m.(*authv1.LoginRequest).GetPassword()}
			},
			clear: func(m proto.Message) []string { return []string{m.(*authv1.LoginRequest).GetUsername()} },
		},
		{
			name: "login response",
			msg:  &authv1.LoginResponse{SessionToken: "tok-1", UserId: "u1", ExpiresUnix: 9},
			sealed: func(m proto.Message) []string {
				return []string{m.(*authv1.LoginResponse).GetSessionToken()}
			},
			clear: func(m proto.Message) []string { return []string{m.(*authv1.LoginResponse).GetUserId()} },
		},
		{
			name: "profile request",
			msg:  &profilev1.GetProfileRequest{SessionToken: "tok-2"},
			sealed: func(m proto.Message) []string {
				return []string{m.(*profilev1.GetProfileRequest).GetSessionToken()}
			},
			clear: func(proto.Message) []string { return nil },
		},
		{
			name:   "profile is PII only and stays clear",
			msg:    &profilev1.Profile{UserId: "u1", Name: "Ada", Email: "ada@example.org"},
			sealed: func(proto.Message) []string { return nil },
			clear:  func(m proto.Message) []string { return []string{m.(*profilev1.Profile).GetName()} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			orig := proto.Clone(tt.msg)
			if err := s.Seal(tt.msg); err != nil {
				t.Fatal(err)
			}
			for _, v := range tt.sealed(tt.msg) {
				if !strings.HasPrefix(v, "moat:v1:") {
					t.Errorf("value not sealed: %q", v)
				}
			}
			for _, v := range tt.clear(tt.msg) {
				if strings.HasPrefix(v, "moat:") {
					t.Errorf("value sealed but not SECRET")
				}
			}
			if err := s.Unseal(tt.msg); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(orig, tt.msg) {
				t.Errorf("round trip differs: got %v want %v", tt.msg, orig)
			}
		})
	}
}

func TestSealIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"))
	msg := newGen(7).envelope()
	if err := s.Seal(msg); err != nil {
		t.Fatal(err)
	}
	once := proto.Clone(msg)
	if err := s.Seal(msg); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(once, msg) {
		t.Fatal("sealing a sealed message changed it")
	}
}

func TestSealEdgeValues(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset))
	tests := []struct {
		name     string
		password string
		sealed   bool
	}{
		{name: "empty stays empty", password: "", sealed: false},
		{name: "prefix only is sealed", password: "moat:", sealed: true},
		{name: "look-alike is sealed", password: "moat:v1:AAAA", sealed: true},
		{name: "unknown version look-alike is sealed", password: "moat:v9:whatever", sealed: true},
		{name: "multi-byte", password: "pässwörd🔑", sealed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := &authv1.LoginRequest{Password: tt.password}
			if err := s.Seal(msg); err != nil {
				t.Fatal(err)
			}
			if got := msg.GetPassword() != tt.password; got != tt.sealed {
				t.Fatalf("sealed = %v, want %v", got, tt.sealed)
			}
			if err := s.Unseal(msg); err != nil {
				t.Fatal(err)
			}
			if msg.GetPassword() != tt.password {
				t.Fatal("round trip changed the value")
			}
		})
	}
}

func TestSealNilAndNoSecrets(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t))
	var nilReq *authv1.LoginRequest
	for _, m := range []proto.Message{nil, nilReq, &testpb.Plain{Id: "x"}, &profilev1.Profile{Name: "n"}} {
		if err := s.Seal(m); err != nil {
			t.Errorf("Seal(%T): %v", m, err)
		}
		if err := s.Unseal(m); err != nil {
			t.Errorf("Unseal(%T): %v", m, err)
		}
	}
}

func TestMissingKeyset(t *testing.T) {
	t.Parallel()
	dflt := newKeyset(t)
	fullRing, err := fields.NewKeyring(map[string]*fields.Keyset{
		fields.DefaultKeyset: dflt, "billing": newKeyset(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	partial, err := fields.NewKeyring(map[string]*fields.Keyset{fields.DefaultKeyset: dflt})
	if err != nil {
		t.Fatal(err)
	}
	sealed := &testpb.Envelope{Token: "a", OtherKey: "b"}
	if err := newSealer(t, fullRing).Seal(sealed); err != nil {
		t.Fatal(err)
	}

	t.Run("seal refuses a clear value", func(t *testing.T) {
		t.Parallel()
		err := newSealer(t, partial).Seal(&testpb.Envelope{OtherKey: "clear"})
		assertKind(t, err, fields.KindMissingKeyset)
	})
	t.Run("seal forwards a sealed value", func(t *testing.T) {
		t.Parallel()
		msg := proto.Clone(sealed)
		if err := newSealer(t, partial).Seal(msg); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(msg, sealed) {
			t.Fatal("forwarded value changed")
		}
	})
	tests := []struct {
		name   string
		policy fields.KeysetPolicy
		want   fields.Kind
	}{
		{name: "forward", policy: fields.Forward},
		{name: "refuse", policy: fields.Refuse, want: fields.KindMissingKeyset},
	}
	for _, tt := range tests {
		t.Run("unseal "+tt.name, func(t *testing.T) {
			t.Parallel()
			msg := proto.Clone(sealed).(*testpb.Envelope)
			err := newSealer(t, partial, fields.WithMissingKeyset(tt.policy)).Unseal(msg)
			if tt.want != "" {
				assertKind(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg.GetToken() != "a" || msg.GetOtherKey() != sealed.GetOtherKey() {
				t.Fatal("forward did not unseal what it could and keep the rest")
			}
		})
	}
}

func TestRequireSealed(t *testing.T) {
	t.Parallel()
	ring := newRing(t, fields.DefaultKeyset)
	tests := []struct {
		name string
		opts []fields.SealerOption
		msg  proto.Message
		want fields.Kind
	}{
		{name: "clear string accepted", msg: &testpb.Envelope{Token: "clear"}},
		{name: "clear bytes accepted", msg: &testpb.Envelope{Blob: []byte("clear")}},
		{
			name: "clear string refused", opts: []fields.SealerOption{fields.WithRequireSealed()},
			msg: &testpb.Envelope{Token: "clear"}, want: fields.KindNotSealed,
		},
		{
			name: "clear nested refused", opts: []fields.SealerOption{fields.WithRequireSealed()},
			msg:  &testpb.Envelope{Inners: []*testpb.Inner{{Raw: []byte("x")}}},
			want: fields.KindNotSealed,
		},
		{
			name: "empty accepted", opts: []fields.SealerOption{fields.WithRequireSealed()},
			msg: &testpb.Envelope{Id: "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			orig := proto.Clone(tt.msg)
			err := newSealer(t, ring, tt.opts...).Unseal(tt.msg)
			if tt.want != "" {
				assertKind(t, err, tt.want)
				return
			}
			if err != nil || !proto.Equal(orig, tt.msg) {
				t.Fatalf("err = %v, changed = %v", err, !proto.Equal(orig, tt.msg))
			}
		})
	}
}

func TestUnsupportedMark(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset))
	assertKind(t, s.Seal(&testpb.Wrong{Number: 3}), fields.KindUnsupported)
	assertKind(t, s.Unseal(&testpb.Wrong{Number: 3}), fields.KindUnsupported)
	wrong := (&testpb.Wrong{}).ProtoReflect().Descriptor()
	assertKind(t, fields.Validate(wrong), fields.KindUnsupported)
	valid := []proto.Message{&testpb.Envelope{}, &testpb.Link{}, &testpb.Plain{}, &authv1.LoginRequest{}}
	for _, m := range valid {
		if err := fields.Validate(m.ProtoReflect().Descriptor()); err != nil {
			t.Errorf("Validate(%T) = %v", m, err)
		}
	}
}

func TestSensitive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		msg               proto.Message
		secret, sensitive bool
	}{
		{name: "plain", msg: &testpb.Plain{}},
		{name: "profile", msg: &profilev1.Profile{}, sensitive: true},
		{name: "profile response", msg: &profilev1.GetProfileResponse{}, sensitive: true},
		{name: "login", msg: &authv1.LoginRequest{}, secret: true, sensitive: true},
		{name: "secret through a cycle", msg: &testpb.Link{}, secret: true, sensitive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secret, sensitive := fields.Sensitive(tt.msg.ProtoReflect().Descriptor())
			if secret != tt.secret || sensitive != tt.sensitive {
				t.Fatalf("Sensitive = %v, %v; want %v, %v", secret, sensitive, tt.secret, tt.sensitive)
			}
		})
	}
}

func TestRecursiveMessages(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset))
	orig := &testpb.Link{Next: &testpb.Link{Next: &testpb.Link{Leaf: &testpb.Leaf{Key: []byte("deep")}}}}
	msg := proto.Clone(orig).(*testpb.Link)
	if err := s.Seal(msg); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg.GetNext().GetNext().GetLeaf().GetKey(), []byte("\x00moat\x01")) {
		t.Fatal("deep bytes field not sealed with the binary envelope")
	}
	if err := s.Unseal(msg); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(orig, msg) {
		t.Fatal("round trip differs")
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	old := newKeyset(t)
	ring, err := fields.NewKeyring(map[string]*fields.Keyset{fields.DefaultKeyset: old})
	if err != nil {
		t.Fatal(err)
	}
	s := newSealer(t, ring)
	before := &authv1.LoginRequest{Password: "before"}
	if err := s.Seal(before); err != nil {
		t.Fatal(err)
	}
	if got := envelopeKeyID(t, before.GetPassword()); got != old.Primary() {
		t.Fatalf("sealed with key %d, want primary %d", got, old.Primary())
	}

	rotated, err := old.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Primary() == old.Primary() || len(rotated.KeyIDs()) != 2 {
		t.Fatalf("rotate: %v", rotated)
	}
	if err := ring.Set(fields.DefaultKeyset, rotated); err != nil {
		t.Fatal(err)
	}
	after := &authv1.LoginRequest{Password: "after"}
	if err := s.Seal(after); err != nil {
		t.Fatal(err)
	}
	if got := envelopeKeyID(t, after.GetPassword()); got != rotated.Primary() {
		t.Fatalf("sealed with key %d after rotation, want %d", got, rotated.Primary())
	}
	for _, orig := range []*authv1.LoginRequest{before, after} {
		m := proto.Clone(orig)
		if err := s.Unseal(m); err != nil {
			t.Fatalf("unseal after rotation: %v", err)
		}
	}

	if _, err := rotated.WithoutKey(rotated.Primary()); !errors.Is(err, fields.ErrBadKeyset) {
		t.Fatalf("removing the primary: %v", err)
	}
	pruned, err := rotated.WithoutKey(old.Primary())
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Set(fields.DefaultKeyset, pruned); err != nil {
		t.Fatal(err)
	}
	m := proto.Clone(before).(*authv1.LoginRequest)
	err = s.Unseal(m)
	assertKind(t, err, fields.KindUnknownKey)
	var fe *fields.Error
	if errors.As(err, &fe) && fe.KeyID != old.Primary() {
		t.Fatalf("error names key %d, want %d", fe.KeyID, old.Primary())
	}
	assertNoLeak(t, err, "before", before.GetPassword())
	m = proto.Clone(after).(*authv1.LoginRequest)
	if err := s.Unseal(m); err != nil || m.GetPassword() != "after" {
		t.Fatalf("current key no longer opens: %v", err)
	}
}

// envelopeKeyID returns the key id in a text envelope.
func envelopeKeyID(t *testing.T, v string) uint32 {
	t.Helper()
	ct, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(v, "moat:v1:"))
	if err != nil || len(ct) < 5 {
		t.Fatalf("not an envelope: %v", err)
	}
	return binary.BigEndian.Uint32(ct[1:5])
}

func assertKind(t *testing.T, err error, want fields.Kind) {
	t.Helper()
	var fe *fields.Error
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a *fields.Error of kind %s", err, want)
	}
	if fe.Kind != want {
		t.Fatalf("kind = %s (%v), want %s", fe.Kind, err, want)
	}
	if !errors.Is(err, sentinelOf(want)) {
		t.Fatalf("errors.Is(err, sentinel of %s) is false", want)
	}
	if !strings.HasPrefix(err.Error(), "fields: ") {
		t.Fatalf("error %q lacks the package prefix", err)
	}
}

func sentinelOf(k fields.Kind) error {
	return map[fields.Kind]error{
		fields.KindMalformed:     fields.ErrMalformed,
		fields.KindCannotDecrypt: fields.ErrCannotDecrypt,
		fields.KindUnknownKey:    fields.ErrUnknownKey,
		fields.KindMissingKeyset: fields.ErrMissingKeyset,
		fields.KindNotSealed:     fields.ErrNotSealed,
		fields.KindUnsupported:   fields.ErrUnsupported,
		fields.KindBadKeyset:     fields.ErrBadKeyset,
		fields.KindSealFailed:    fields.ErrSealFailed,
	}[k]
}

// assertNoLeak fails when err's message holds any of the values.
func assertNoLeak(t *testing.T, err error, values ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, v := range values {
		if v != "" && strings.Contains(err.Error(), v) {
			t.Fatalf("error message %q holds a sensitive value", err)
		}
	}
}
