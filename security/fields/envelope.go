package fields

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// Envelope formats. A sealed string field holds
//
//	"moat:v1:" + base64url(no padding) of the Tink ciphertext
//
// and a sealed bytes field holds
//
//	0x00 'm' 'o' 'a' 't' 0x01 followed by the Tink ciphertext.
//
// The Tink ciphertext is 0x01, the four-byte big-endian key id, a 12-byte
// nonce, the AES-GCM ciphertext and a 16-byte tag.
const (
	textMagic   = "moat:"
	textPrefix  = "moat:v1:"
	binMagic    = "\x00moat"
	binVersion1 = 0x01
	binPrefix   = binMagic + "\x01"
)

var b64 = base64.RawURLEncoding.Strict()

// looksSealedText reports whether a string value carries moat's envelope
// prefix, whatever its version.
func looksSealedText(s string) bool { return strings.HasPrefix(s, textMagic) }

// looksSealedBytes reports whether a bytes value carries moat's envelope
// prefix, whatever its version.
func looksSealedBytes(b []byte) bool {
	return len(b) >= len(binMagic) && string(b[:len(binMagic)]) == binMagic
}

// sealedText reports whether s is a well-formed version 1 text envelope. A
// value that merely starts with the prefix is not taken as sealed, so that
// a plaintext that happens to begin with "moat:" is still sealed.
func sealedText(s string) bool {
	ct, err := decodeText(s)
	return err == nil && checkTink(ct) == nil
}

// sealedBytes is sealedText for bytes values.
func sealedBytes(b []byte) bool {
	ct, err := decodeBytes(b)
	return err == nil && checkTink(ct) == nil
}

func encodeText(ct []byte) string {
	buf := make([]byte, len(textPrefix)+b64.EncodedLen(len(ct)))
	copy(buf, textPrefix)
	b64.Encode(buf[len(textPrefix):], ct)
	return string(buf)
}

func encodeBytes(ct []byte) []byte {
	buf := make([]byte, 0, len(binPrefix)+len(ct))
	return append(append(buf, binPrefix...), ct...)
}

// envelopeError is a decoding failure; the caller adds the field.
type envelopeError struct {
	kind   Kind
	detail string
	keyID  uint32
}

func (e *envelopeError) Error() string { return "fields: " + e.detail }

var (
	errUnknownVersion = &envelopeError{kind: KindMalformed, detail: "unknown envelope version"}
	errBadEncoding    = &envelopeError{kind: KindMalformed, detail: "envelope is not valid base64url"}
	errTruncated      = &envelopeError{kind: KindMalformed, detail: "envelope is truncated"}
	errBadTinkPrefix  = &envelopeError{kind: KindMalformed, detail: "envelope has no key id"}
)

// decodeText returns the Tink ciphertext of a text envelope.
func decodeText(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, textPrefix)
	if !ok {
		return nil, errUnknownVersion
	}
	if len(rest) > 0 && len(rest)%4 == 1 {
		return nil, errTruncated
	}
	// encoding/base64 skips line breaks; an envelope has none.
	if strings.IndexByte(rest, '\r') >= 0 || strings.IndexByte(rest, '\n') >= 0 {
		return nil, errBadEncoding
	}
	ct, err := b64.DecodeString(rest)
	if err != nil {
		return nil, errBadEncoding
	}
	return ct, nil
}

// decodeBytes returns the Tink ciphertext of a binary envelope. The result
// aliases b.
func decodeBytes(b []byte) ([]byte, error) {
	if !looksSealedBytes(b) {
		return nil, errUnknownVersion
	}
	if len(b) <= len(binMagic) {
		return nil, errTruncated
	}
	if b[len(binMagic)] != binVersion1 {
		return nil, errUnknownVersion
	}
	return b[len(binPrefix):], nil
}

// checkTink checks the length and prefix of a Tink ciphertext.
func checkTink(ct []byte) error {
	if len(ct) < tinkPrefixLen {
		return errTruncated
	}
	if ct[0] != tinkPrefixByte {
		return errBadTinkPrefix
	}
	if len(ct) < minCiphertext {
		return errTruncated
	}
	return nil
}

// keyID returns the key id of a checked Tink ciphertext.
func keyID(ct []byte) uint32 { return binary.BigEndian.Uint32(ct[1:tinkPrefixLen]) }
