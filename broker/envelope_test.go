package broker

import (
	"bytes"
	"maps"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

func sampleEnvelope() *envelope {
	return &envelope{
		id:        [idLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		time:      time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano(),
		publisher: "spiffe://moat.test/svc/shop",
		chain:     [][]byte{[]byte("leaf"), []byte("intermediate")},
		header:    map[string]string{"b": "2", "a": "1", "empty": ""},
		body:      []byte("body"),
		signature: []byte("sig"),
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		e    *envelope
	}{
		{"full", sampleEnvelope()},
		{"unsigned, empty body", &envelope{id: [idLen]byte{9}, time: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.e.marshal()
			if len(data) != tt.e.size() {
				t.Errorf("size %d, marshalled %d", tt.e.size(), len(data))
			}
			got, err := parseEnvelope(data)
			if err != nil {
				t.Fatal(err)
			}
			if !envelopesEqual(got, tt.e) {
				t.Errorf("got %+v, want %+v", got, tt.e)
			}
			if !bytes.Equal(got.marshal(), data) {
				t.Error("re-encoding differs")
			}
		})
	}
}

func envelopesEqual(a, b *envelope) bool {
	if a.id != b.id || a.time != b.time || a.publisher != b.publisher ||
		!bytes.Equal(a.body, b.body) || !bytes.Equal(a.signature, b.signature) ||
		len(a.chain) != len(b.chain) || len(a.header) != len(b.header) ||
		!maps.Equal(a.header, b.header) {
		return false
	}
	for i := range a.chain {
		if !bytes.Equal(a.chain[i], b.chain[i]) {
			return false
		}
	}
	return true
}

func TestParseEnvelopeRefuses(t *testing.T) {
	t.Parallel()
	valid := sampleEnvelope().marshal()
	field := func(num protowire.Number, typ protowire.Type, v []byte) []byte {
		b := protowire.AppendTag(nil, num, typ)
		if typ == protowire.VarintType {
			return protowire.AppendVarint(b, 5)
		}
		return protowire.AppendBytes(b, v)
	}
	with := func(extra ...[]byte) []byte {
		out := append([]byte(nil), valid...)
		for _, e := range extra {
			out = append(out, e...)
		}
		return out
	}
	entry := func(k, v string) []byte {
		b := protowire.AppendTag(nil, fieldHeaderKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, fieldHeaderValue, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	minimal := func(extra ...[]byte) []byte {
		b := []byte(envelopeMagic)
		b = append(b, field(fieldID, protowire.BytesType, make([]byte, idLen))...)
		b = append(b, field(fieldTime, protowire.VarintType, nil)...)
		for _, e := range extra {
			b = append(b, e...)
		}
		return b
	}
	tests := []struct {
		name  string
		data  []byte
		plain bool // not an envelope at all
	}{
		{"empty", nil, true},
		{"other bytes", []byte("hello world"), true},
		{"other version", append([]byte("moat\x02"), valid[5:]...), true},
		{"truncated", valid[:len(valid)-1], false},
		{"unknown field", with(field(9, protowire.BytesType, []byte("x"))), false},
		{"field zero", with([]byte{0x02, 0x00}), false},
		{"repeated body", with(field(fieldBody, protowire.BytesType, []byte("x"))), false},
		{"repeated signature", with(field(fieldSignature, protowire.BytesType, []byte("x"))),
			false},
		{"time as bytes", minimal(field(fieldTime, protowire.BytesType, []byte("x"))), false},
		{"body as varint", minimal(field(fieldBody, protowire.VarintType, nil)), false},
		{"short id", append(append([]byte(envelopeMagic),
			field(fieldID, protowire.BytesType, []byte("short"))...),
			field(fieldTime, protowire.VarintType, nil)...), false},
		{"no id", append([]byte(envelopeMagic),
			field(fieldTime, protowire.VarintType, nil)...), false},
		{"no time", append([]byte(envelopeMagic),
			field(fieldID, protowire.BytesType, make([]byte, idLen))...), false},
		{"empty certificate", minimal(field(fieldChain, protowire.BytesType, nil)), false},
		{"empty signature", minimal(field(fieldSignature, protowire.BytesType, nil)), false},
		{"empty publisher", minimal(field(fieldPublisher, protowire.BytesType, nil)), false},
		{"header without key", minimal(field(fieldHeader, protowire.BytesType,
			entry("", "v"))), false},
		{"header repeated", minimal(field(fieldHeader, protowire.BytesType, entry("k", "1")),
			field(fieldHeader, protowire.BytesType, entry("k", "2"))), false},
		{"header unknown field", minimal(field(fieldHeader, protowire.BytesType,
			append(entry("k", "v"), field(3, protowire.BytesType, []byte("x"))...))), false},
		{"too many certificates", minimal(bytes.Repeat(
			field(fieldChain, protowire.BytesType, []byte("c")), maxChainLen+1)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseEnvelope(tt.data)
			if err == nil {
				t.Fatalf("parsed: %+v", e)
			}
			if got := err == errNoEnvelope; got != tt.plain {
				t.Errorf("error %v, want no-envelope=%v", err, tt.plain)
			}
		})
	}
}

func TestDigestBindsEveryPart(t *testing.T) {
	t.Parallel()
	base := sampleEnvelope()
	want := base.digest("orders.created")
	tests := []struct {
		name   string
		topic  string
		change func(*envelope)
	}{
		{"topic", "orders.cancelled", func(*envelope) {}},
		{"id", "orders.created", func(e *envelope) { e.id[15]++ }},
		{"time", "orders.created", func(e *envelope) { e.time++ }},
		{"publisher", "orders.created", func(e *envelope) { e.publisher += "x" }},
		{"header value", "orders.created", func(e *envelope) { e.header["a"] = "x" }},
		{"header key", "orders.created", func(e *envelope) {
			delete(e.header, "a")
			e.header["A"] = "1"
		}},
		{"header moved into the body", "orders.created", func(e *envelope) {
			delete(e.header, "empty")
			e.body = append(e.body, "empty"...)
		}},
		{"body", "orders.created", func(e *envelope) { e.body = []byte("bodz") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := sampleEnvelope()
			e.header = maps.Clone(base.header)
			tt.change(e)
			if e.digest(tt.topic) == want {
				t.Error("digest unchanged")
			}
		})
	}
	if sampleEnvelope().digest("orders.created") != want {
		t.Error("digest not deterministic")
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add(sampleEnvelope().marshal())
	f.Add((&envelope{id: [idLen]byte{1}, time: 1}).marshal())
	f.Add([]byte(envelopeMagic))
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parseEnvelope(data)
		if err != nil {
			return
		}
		// What parses re-encodes to bytes that parse to the same envelope.
		again, err := parseEnvelope(e.marshal())
		if err != nil {
			t.Fatalf("re-encoded envelope does not parse: %v", err)
		}
		if !envelopesEqual(e, again) {
			t.Fatalf("round trip changed the envelope: %+v / %+v", e, again)
		}
		_ = e.digest("fuzz")
	})
}
