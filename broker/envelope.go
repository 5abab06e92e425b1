package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// envelopeMagic starts every envelope: "moat" and the format version.
const envelopeMagic = "moat\x01"

// signingContext starts the signed bytes, so that a signature made for an
// event can never be mistaken for one over anything else.
const signingContext = "moat broker event v1\x00"

// Field numbers of the envelope (protobuf wire format after the magic).
const (
	fieldID        protowire.Number = 1
	fieldTime      protowire.Number = 2
	fieldPublisher protowire.Number = 3
	fieldChain     protowire.Number = 4
	fieldHeader    protowire.Number = 5
	fieldBody      protowire.Number = 6
	fieldSignature protowire.Number = 7

	fieldHeaderKey   protowire.Number = 1
	fieldHeaderValue protowire.Number = 2
)

// Limits of what an envelope may hold.
const (
	maxChainLen   = 8
	maxHeaderKeys = 128
)

const idLen = 16

// errNoEnvelope marks data that does not start with the envelope magic.
var errNoEnvelope = errors.New("broker: no moat envelope")

// envelope is one event on the wire. Decoded byte slices alias the input.
type envelope struct {
	id        [idLen]byte
	time      int64 // unix nanoseconds
	publisher string
	chain     [][]byte
	header    map[string]string
	body      []byte
	signature []byte
}

func (e *envelope) idHex() string { return hex.EncodeToString(e.id[:]) }

func (e *envelope) signed() bool {
	return e.publisher != "" && len(e.chain) > 0 && len(e.signature) > 0
}

// size returns the exact encoded length, so that marshal allocates once.
func (e *envelope) size() int {
	n := len(envelopeMagic)
	n += protowire.SizeTag(fieldID) + protowire.SizeBytes(idLen)
	n += protowire.SizeTag(fieldTime) + protowire.SizeVarint(uint64(e.time))
	if e.publisher != "" {
		n += protowire.SizeTag(fieldPublisher) + protowire.SizeBytes(len(e.publisher))
	}
	for _, c := range e.chain {
		n += protowire.SizeTag(fieldChain) + protowire.SizeBytes(len(c))
	}
	for k, v := range e.header {
		n += protowire.SizeTag(fieldHeader) + protowire.SizeBytes(headerEntrySize(k, v))
	}
	n += protowire.SizeTag(fieldBody) + protowire.SizeBytes(len(e.body))
	if len(e.signature) > 0 {
		n += protowire.SizeTag(fieldSignature) + protowire.SizeBytes(len(e.signature))
	}
	return n
}

func headerEntrySize(k, v string) int {
	return protowire.SizeTag(fieldHeaderKey) + protowire.SizeBytes(len(k)) +
		protowire.SizeTag(fieldHeaderValue) + protowire.SizeBytes(len(v))
}

// marshal encodes the envelope; header entries are written in key order so
// that equal envelopes encode equally.
func (e *envelope) marshal() []byte {
	b := make([]byte, 0, e.size())
	b = append(b, envelopeMagic...)
	b = protowire.AppendTag(b, fieldID, protowire.BytesType)
	b = protowire.AppendBytes(b, e.id[:])
	b = protowire.AppendTag(b, fieldTime, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(e.time))
	if e.publisher != "" {
		b = protowire.AppendTag(b, fieldPublisher, protowire.BytesType)
		b = protowire.AppendString(b, e.publisher)
	}
	for _, c := range e.chain {
		b = protowire.AppendTag(b, fieldChain, protowire.BytesType)
		b = protowire.AppendBytes(b, c)
	}
	for _, k := range sortedKeys(e.header) {
		v := e.header[k]
		b = protowire.AppendTag(b, fieldHeader, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerEntrySize(k, v)))
		b = protowire.AppendTag(b, fieldHeaderKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, fieldHeaderValue, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	b = protowire.AppendTag(b, fieldBody, protowire.BytesType)
	b = protowire.AppendBytes(b, e.body)
	if len(e.signature) > 0 {
		b = protowire.AppendTag(b, fieldSignature, protowire.BytesType)
		b = protowire.AppendBytes(b, e.signature)
	}
	return b
}

func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// parseEnvelope decodes data strictly: unknown fields, repeated singular
// fields, wrong wire types and trailing bytes are all refused, so that
// nothing unsigned can ride along in a signed envelope.
func parseEnvelope(data []byte) (*envelope, error) {
	if !bytes.HasPrefix(data, []byte(envelopeMagic)) {
		return nil, errNoEnvelope
	}
	b := data[len(envelopeMagic):]
	e := &envelope{}
	var seen [fieldSignature + 1]bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num < fieldID || num > fieldSignature {
			return nil, fmt.Errorf("unknown field %d", num)
		}
		if num != fieldChain && num != fieldHeader {
			if seen[num] {
				return nil, fmt.Errorf("field %d repeated", num)
			}
			seen[num] = true
		}
		if num == fieldTime {
			if typ != protowire.VarintType {
				return nil, fmt.Errorf("field %d: wrong wire type %d", num, typ)
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			e.time = int64(v)
			b = b[n:]
			continue
		}
		if typ != protowire.BytesType {
			return nil, fmt.Errorf("field %d: wrong wire type %d", num, typ)
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := e.set(num, v); err != nil {
			return nil, err
		}
	}
	if !seen[fieldID] || !seen[fieldTime] {
		return nil, errors.New("message id or timestamp missing")
	}
	if e.time <= 0 {
		return nil, fmt.Errorf("timestamp %d out of range", e.time)
	}
	return e, nil
}

func (e *envelope) set(num protowire.Number, v []byte) error {
	switch num {
	case fieldID:
		if len(v) != idLen {
			return fmt.Errorf("message id of %d bytes, want %d", len(v), idLen)
		}
		copy(e.id[:], v)
	case fieldPublisher:
		if len(v) == 0 {
			return errors.New("empty publisher")
		}
		e.publisher = string(v)
	case fieldChain:
		if len(e.chain) == maxChainLen {
			return fmt.Errorf("more than %d certificates", maxChainLen)
		}
		if len(v) == 0 {
			return errors.New("empty certificate")
		}
		e.chain = append(e.chain, v)
	case fieldHeader:
		if len(e.header) == maxHeaderKeys {
			return fmt.Errorf("more than %d header entries", maxHeaderKeys)
		}
		k, val, err := parseHeaderEntry(v)
		if err != nil {
			return err
		}
		if e.header == nil {
			e.header = make(map[string]string)
		}
		if _, dup := e.header[k]; dup {
			return fmt.Errorf("header %q repeated", k)
		}
		e.header[k] = val
	case fieldBody:
		e.body = v
	case fieldSignature:
		if len(v) == 0 {
			return errors.New("empty signature")
		}
		e.signature = v
	}
	return nil
}

func parseHeaderEntry(b []byte) (key, value string, err error) {
	var seenKey, seenValue bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", "", fmt.Errorf("header tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			return "", "", fmt.Errorf("header field %d: wrong wire type %d", num, typ)
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", "", fmt.Errorf("header field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldHeaderKey && !seenKey:
			key, seenKey = string(v), true
		case num == fieldHeaderValue && !seenValue:
			value, seenValue = string(v), true
		default:
			return "", "", fmt.Errorf("header field %d unknown or repeated", num)
		}
	}
	if key == "" {
		return "", "", errors.New("header entry without key")
	}
	return key, value, nil
}

// digest returns the SHA-256 of the signed bytes of an event published to
// topic. The signed bytes are the signing context, then topic, message
// id, publisher, timestamp, the header entry count and each entry's key
// and value (sorted by key), and the body. Each variable-length part is
// an 8-byte big-endian length followed by its bytes; the timestamp and the
// count are 8-byte big-endian numbers.
func (e *envelope) digest(topic string) [sha256.Size]byte {
	// The parts before the body are gathered in one buffer, on the stack
	// when they are small, and hashed with a single write.
	var scratch [512]byte
	b := append(scratch[:0], signingContext...)
	b = appendPart(b, topic)
	b = appendPart(b, string(e.id[:]))
	b = appendPart(b, e.publisher)
	b = binary.BigEndian.AppendUint64(b, uint64(e.time))
	keys := sortedKeys(e.header)
	b = binary.BigEndian.AppendUint64(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendPart(b, k)
		b = appendPart(b, e.header[k])
	}
	b = binary.BigEndian.AppendUint64(b, uint64(len(e.body)))
	h := sha256.New()
	h.Write(b)
	h.Write(e.body)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

func appendPart(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}
