package fields

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// DefaultKeyset is the name of the keyset that seals SECRET fields whose
// option names no key.
const DefaultKeyset = "default"

// tinkPrefixLen is the length of the prefix Tink writes before each
// ciphertext of a key with the TINK output prefix: a version byte and the
// big-endian key id.
const (
	tinkPrefixLen   = 5
	tinkPrefixByte  = 0x01
	gcmOverhead     = 12 + 16
	minCiphertext   = tinkPrefixLen + gcmOverhead
	aesKeySizeBytes = 32
)

// Keyset is an immutable set of AES-256-GCM keys, each with a key id, one
// of them primary. The primary key seals; every enabled key unseals, so a
// keyset rotates by adding a key, making it primary, and removing the old
// key once nothing sealed with it is still in flight or at rest.
//
// A Keyset is a Tink keyset: ciphertexts start with Tink's five-byte prefix
// (0x01 and the key id). It is safe for concurrent use. Its String method
// never shows key material.
type Keyset struct {
	handle  *keyset.Handle
	aead    tink.AEAD
	primary uint32
	// enabled holds the ids of the keys that can unseal.
	enabled map[uint32]struct{}
	ids     []uint32
	newest  uint32
}

// NewKeyset returns a keyset with one fresh random AES-256-GCM key.
func NewKeyset() (*Keyset, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot generate a key", Err: err}
	}
	return newKeyset(h)
}

// newKeyset checks that every key of h is an AES-256-GCM key with Tink's
// output prefix, and builds the AEAD primitive.
func newKeyset(h *keyset.Handle) (*Keyset, error) {
	bad := func(detail string) (*Keyset, error) {
		return nil, &Error{Kind: KindBadKeyset, Detail: detail}
	}
	if h == nil || h.Len() == 0 {
		return bad("keyset holds no key")
	}
	ks := &Keyset{handle: h, enabled: make(map[uint32]struct{}, h.Len())}
	hasPrimary := false
	for i := range h.Len() {
		e, err := h.Entry(i)
		if err != nil {
			return bad("cannot read a key entry")
		}
		k, ok := e.Key().(*aesgcm.Key)
		if !ok {
			return bad(fmt.Sprintf("key %d is not an AES-GCM key", e.KeyID()))
		}
		p, ok := k.Parameters().(*aesgcm.Parameters)
		if !ok || p.KeySizeInBytes() != aesKeySizeBytes || p.Variant() != aesgcm.VariantTink {
			return bad(fmt.Sprintf("key %d is not AES-256-GCM with Tink's output prefix", e.KeyID()))
		}
		ks.ids = append(ks.ids, e.KeyID())
		ks.newest = e.KeyID() // keys are kept in the order they were added
		if e.KeyStatus() == keyset.Enabled {
			ks.enabled[e.KeyID()] = struct{}{}
		}
		if e.IsPrimary() {
			if e.KeyStatus() != keyset.Enabled {
				return bad("the primary key is not enabled")
			}
			ks.primary = e.KeyID()
			hasPrimary = true
		}
	}
	if !hasPrimary {
		return bad("keyset has no primary key")
	}
	slices.Sort(ks.ids)
	a, err := aead.New(h)
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot build the AEAD", Err: err}
	}
	ks.aead = a
	return ks, nil
}

// Primary returns the id of the key that seals.
func (k *Keyset) Primary() uint32 { return k.primary }

// KeyIDs returns the ids of every key in the keyset, enabled or not, in
// increasing order.
func (k *Keyset) KeyIDs() []uint32 { return slices.Clone(k.ids) }

// Newest returns the id of the key added last.
func (k *Keyset) Newest() uint32 { return k.newest }

// Enabled reports whether the key id can unseal.
func (k *Keyset) Enabled(id uint32) bool {
	_, ok := k.enabled[id]
	return ok
}

// String describes the keyset without key material.
func (k *Keyset) String() string {
	ids := make([]string, len(k.ids))
	for i, id := range k.ids {
		ids[i] = strconv.FormatUint(uint64(id), 10)
	}
	return fmt.Sprintf("fields.Keyset{primary: %d, keys: [%s]}", k.primary, strings.Join(ids, " "))
}

// Rotate returns a copy of k with a new random key that becomes primary.
// The old keys stay enabled, so values sealed under them still unseal.
//
// A new primary key seals at once in the process that rotates; other
// processes holding the keyset cannot open what it seals until they reload
// the file. Where several services share a keyset, use [Keyset.AddKey]
// and [Keyset.Promote] instead.
func (k *Keyset) Rotate() (*Keyset, error) {
	m := keyset.NewManagerFromHandle(k.handle)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot add a key", Err: err}
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot promote the new key", Err: err}
	}
	h, err := m.Handle()
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot build the rotated keyset", Err: err}
	}
	return newKeyset(h)
}

// AddKey returns a copy of k with a new key that is not yet primary, and
// its id. Every holder can unseal with the new key as soon as it reloads
// the keyset; [Keyset.Promote] then makes it the key that seals. Rotating
// in these two steps, with a pause longer than the services' reload
// interval between them, fails no call; [Keyset.Rotate] does both at once.
func (k *Keyset) AddKey() (*Keyset, uint32, error) {
	m := keyset.NewManagerFromHandle(k.handle)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, 0, &Error{Kind: KindBadKeyset, Detail: "cannot add a key", Err: err}
	}
	h, err := m.Handle()
	if err != nil {
		return nil, 0, &Error{Kind: KindBadKeyset, Detail: "cannot build the keyset", Err: err}
	}
	next, err := newKeyset(h)
	return next, id, err
}

// Promote returns a copy of k in which key id seals.
func (k *Keyset) Promote(id uint32) (*Keyset, error) {
	if !slices.Contains(k.ids, id) {
		return nil, &Error{Kind: KindBadKeyset, Detail: fmt.Sprintf("no key %d in the keyset", id)}
	}
	m := keyset.NewManagerFromHandle(k.handle)
	if err := m.SetPrimary(id); err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot promote the key", Err: err}
	}
	h, err := m.Handle()
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot build the keyset", Err: err}
	}
	return newKeyset(h)
}

// WithoutKey returns a copy of k without the key id. Values sealed with
// that key no longer unseal ([KindUnknownKey]). The primary key cannot be
// removed: rotate first.
func (k *Keyset) WithoutKey(id uint32) (*Keyset, error) {
	if id == k.primary {
		return nil, &Error{Kind: KindBadKeyset,
			Detail: fmt.Sprintf("key %d is primary: rotate before removing it", id)}
	}
	if !slices.Contains(k.ids, id) {
		return nil, &Error{Kind: KindBadKeyset, Detail: fmt.Sprintf("no key %d in the keyset", id)}
	}
	m := keyset.NewManagerFromHandle(k.handle)
	if err := m.Delete(id); err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot remove the key", Err: err}
	}
	h, err := m.Handle()
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot build the keyset", Err: err}
	}
	return newKeyset(h)
}

// ParseKeyset reads a keyset in Tink's JSON format. With a nil master it
// reads a cleartext keyset, which is meant for development only: anyone who
// can read the file can read every sealed field. With a master AEAD (a KMS
// key, or a keyset kept elsewhere) it reads a keyset encrypted by that
// master, and refuses a cleartext one.
func ParseKeyset(data []byte, master tink.AEAD) (*Keyset, error) {
	var probe struct {
		Encrypted *string `json:"encryptedKeyset"`
		Key       []any   `json:"key"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		// The decoder's message may quote the input, which is key material.
		return nil, &Error{Kind: KindBadKeyset, Detail: "not a Tink JSON keyset"}
	}
	var (
		h   *keyset.Handle
		err error
	)
	switch {
	case probe.Encrypted != nil && master == nil:
		return nil, &Error{Kind: KindBadKeyset,
			Detail: "keyset is encrypted: configure its master key (WithMasterKey)"}
	case probe.Encrypted != nil:
		h, err = keyset.Read(keyset.NewJSONReader(bytes.NewReader(data)), master)
		if err != nil {
			return nil, &Error{Kind: KindBadKeyset,
				Detail: "cannot decrypt the keyset with the master key, or it is malformed"}
		}
	case master != nil:
		return nil, &Error{Kind: KindBadKeyset,
			Detail: "keyset is in cleartext but a master key is configured: encrypt it"}
	default:
		h, err = insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(data)))
		if err != nil {
			return nil, &Error{Kind: KindBadKeyset, Detail: "not a valid Tink JSON keyset"}
		}
	}
	return newKeyset(h)
}

// MarshalCleartext returns the keyset in Tink's JSON format, unencrypted.
// The result holds key material: write it only to a file readable by the
// service alone, and only for development.
func (k *Keyset) MarshalCleartext() ([]byte, error) {
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(k.handle, keyset.NewJSONWriter(&buf)); err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot encode the keyset", Err: err}
	}
	return buf.Bytes(), nil
}

// MarshalEncrypted returns the keyset in Tink's JSON format, encrypted by
// master. [ParseKeyset] reads it back given the same master.
func (k *Keyset) MarshalEncrypted(master tink.AEAD) ([]byte, error) {
	if master == nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "no master key to encrypt the keyset with"}
	}
	var buf bytes.Buffer
	if err := k.handle.Write(keyset.NewJSONWriter(&buf), master); err != nil {
		return nil, &Error{Kind: KindBadKeyset, Detail: "cannot encrypt the keyset", Err: err}
	}
	return buf.Bytes(), nil
}

// WriteKeysetFile writes k to path atomically (a temporary file in the
// same directory, then a rename), readable by its owner only. With a nil
// master the file is cleartext, for development; otherwise it is
// encrypted by master. A [Keyring] watching path picks the new keyset up.
func WriteKeysetFile(path string, k *Keyset, master tink.AEAD) error {
	var (
		data []byte
		err  error
	)
	if master == nil {
		data, err = k.MarshalCleartext()
	} else {
		data, err = k.MarshalEncrypted(master)
	}
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return &Error{Kind: KindBadKeyset, Path: path, Detail: "cannot create the file", Err: err}
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return &Error{Kind: KindBadKeyset, Path: path, Detail: "cannot write the file", Err: err}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return &Error{Kind: KindBadKeyset, Path: path, Detail: "cannot write the file", Err: err}
	}
	if err := tmp.Close(); err != nil {
		return &Error{Kind: KindBadKeyset, Path: path, Detail: "cannot write the file", Err: err}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return &Error{Kind: KindBadKeyset, Path: path, Detail: "cannot replace the file", Err: err}
	}
	return nil
}

// ReadKeysetFile reads a keyset file written by [WriteKeysetFile] or by
// Tink's tools; master is as for [ParseKeyset].
func ReadKeysetFile(path string, master tink.AEAD) (*Keyset, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Path: path, Detail: "cannot read the file", Err: err}
	}
	ks, err := ParseKeyset(data, master)
	if fe, ok := err.(*Error); ok {
		fe.Path = path
	}
	return ks, err
}

// RotateKeysetFile adds a new primary key to the keyset in path and
// rewrites the file atomically. Services watching the file seal with the
// new key once they reload it, and still unseal values sealed with the old
// ones. It returns the rotated keyset.
func RotateKeysetFile(path string, master tink.AEAD) (*Keyset, error) {
	ks, err := ReadKeysetFile(path, master)
	if err != nil {
		return nil, err
	}
	next, err := ks.Rotate()
	if err != nil {
		return nil, err
	}
	if err := WriteKeysetFile(path, next, master); err != nil {
		return nil, err
	}
	return next, nil
}
