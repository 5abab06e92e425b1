package fields

import (
	"bytes"
	"strings"
	"testing"
)

func TestEnvelopeEncoding(t *testing.T) {
	t.Parallel()
	ct := append([]byte{tinkPrefixByte, 0, 0, 0, 42}, make([]byte, gcmOverhead)...)
	tests := []struct {
		name   string
		text   string
		bin    []byte
		sealed bool
		keyID  uint32
	}{
		{name: "well formed", text: encodeText(ct), bin: encodeBytes(ct), sealed: true, keyID: 42},
		{name: "too short", text: encodeText(ct[:minCiphertext-1]), bin: encodeBytes(ct[:minCiphertext-1])},
		{name: "no tink prefix", text: encodeText(append([]byte{0}, ct[1:]...)),
			bin: encodeBytes(append([]byte{0}, ct[1:]...))},
		{name: "empty", text: textPrefix, bin: []byte(binPrefix)},
		{name: "other version", text: "moat:v2:" + encodeText(ct)[len(textPrefix):],
			bin: append([]byte(binMagic+"\x02"), ct...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := sealedText(tt.text); got != tt.sealed {
				t.Errorf("sealedText = %v", got)
			}
			if got := sealedBytes(tt.bin); got != tt.sealed {
				t.Errorf("sealedBytes = %v", got)
			}
			if !looksSealedText(tt.text) || !looksSealedBytes(tt.bin) {
				t.Error("prefix not recognised")
			}
			if tt.sealed {
				got, err := decodeText(tt.text)
				if err != nil || !bytes.Equal(got, ct) || keyID(got) != tt.keyID {
					t.Errorf("decodeText = %x, %v", got, err)
				}
				got, err = decodeBytes(tt.bin)
				if err != nil || !bytes.Equal(got, ct) {
					t.Errorf("decodeBytes = %x, %v", got, err)
				}
			}
		})
	}
	if looksSealedText("moa") || looksSealedBytes([]byte("\x00mo")) {
		t.Error("short values taken for envelopes")
	}
}

// FuzzEnvelope feeds the envelope decoders arbitrary input: they must not
// panic, and must agree with each other.
func FuzzEnvelope(f *testing.F) {
	ct := append([]byte{tinkPrefixByte, 1, 2, 3, 4}, make([]byte, gcmOverhead+3)...)
	f.Add([]byte(encodeText(ct)))
	f.Add(encodeBytes(ct))
	f.Add([]byte("moat:v1:"))
	f.Add([]byte("moat:v1:A"))
	f.Add([]byte("\x00moat\x01"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := string(in)
		if ct, err := decodeText(s); err == nil {
			if !strings.HasPrefix(s, textPrefix) {
				t.Fatal("decoded a value without the prefix")
			}
			if checkTink(ct) == nil {
				_ = keyID(ct)
				if !sealedText(s) {
					t.Fatal("sealedText disagrees with the decoder")
				}
				if encodeText(ct) != s {
					t.Fatal("text envelope decoding is not canonical")
				}
			}
		} else if _, ok := err.(*envelopeError); !ok {
			t.Fatalf("untyped error %v", err)
		}
		if ct, err := decodeBytes(in); err == nil {
			if checkTink(ct) == nil {
				_ = keyID(ct)
				if !sealedBytes(in) || !bytes.Equal(encodeBytes(ct), in) {
					t.Fatal("binary envelope round trip")
				}
			}
		} else if _, ok := err.(*envelopeError); !ok {
			t.Fatalf("untyped error %v", err)
		}
		_ = looksSealedText(s)
		_ = looksSealedBytes(in)
	})
}
