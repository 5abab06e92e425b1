package registry

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Consul tags in go-micro's encoding. go-micro's Consul registry reads a
// service's version, metadata and endpoints back from tags: each tag is a
// prefix followed by the lowercase hex of the zlib-compressed value. Older
// go-micro versions wrote the value in plain text after a prefix ending in
// '=' instead; a decoder takes the first form it meets.
const (
	tagMetadata      = "t-"
	tagEndpoint      = "e-"
	tagVersion       = "v-"
	tagMetadataPlain = "t="
	tagEndpointPlain = "e="
	tagVersionPlain  = "v="
)

// wireEndpoint and wireValue mirror go-micro's JSON field names and order.
type wireEndpoint struct {
	Request  *wireValue        `json:"request"`
	Response *wireValue        `json:"response"`
	Metadata map[string]string `json:"metadata"`
	Name     string            `json:"name"`
}

type wireValue struct {
	Name   string       `json:"name"`
	Type   string       `json:"type"`
	Values []*wireValue `json:"values"`
}

// EncodeTags returns the Consul tags go-micro reads for node n of s: one
// per metadata pair (sorted by key), one per endpoint, one for the version.
func EncodeTags(s *Service, n *Node) ([]string, error) {
	var tags []string
	for _, k := range slices.Sorted(maps.Keys(n.Metadata)) {
		b, err := json.Marshal(map[string]string{k: n.Metadata[k]})
		if err != nil {
			return nil, fmt.Errorf("registry: encode metadata tag: %w", err)
		}
		tags = append(tags, tagMetadata+compressHex(b))
	}
	for _, e := range s.Endpoints {
		b, err := json.Marshal(toWireEndpoint(e))
		if err != nil {
			return nil, fmt.Errorf("registry: encode endpoint tag %q: %w", e.Name, err)
		}
		tags = append(tags, tagEndpoint+compressHex(b))
	}
	tags = append(tags, tagVersion+compressHex([]byte(s.Version)))
	return tags, nil
}

// DecodedTags is what [DecodeTags] reads from a registration's tags.
type DecodedTags struct {
	Version   string
	Metadata  map[string]string
	Endpoints []*Endpoint
}

// DecodeTags reads go-micro's encoded or plain tags. Tags it cannot decode
// are ignored, as go-micro does.
func DecodeTags(tags []string) DecodedTags {
	var d DecodedTags
	metaSeen, endpointSeen, versionSeen := "", "", false
	for _, t := range tags {
		switch {
		case strings.HasPrefix(t, tagVersion) || strings.HasPrefix(t, tagVersionPlain):
			if versionSeen {
				continue
			}
			if b, ok := decodeTag(t, tagVersion, tagVersionPlain); ok {
				d.Version, versionSeen = string(b), true
			}
		case strings.HasPrefix(t, tagMetadata) || strings.HasPrefix(t, tagMetadataPlain):
			form := t[:2]
			if metaSeen != "" && metaSeen != form {
				continue
			}
			b, ok := decodeTag(t, tagMetadata, tagMetadataPlain)
			var kv map[string]string
			if !ok || json.Unmarshal(b, &kv) != nil {
				continue
			}
			metaSeen = form
			if d.Metadata == nil {
				d.Metadata = map[string]string{}
			}
			maps.Copy(d.Metadata, kv)
		case strings.HasPrefix(t, tagEndpoint) || strings.HasPrefix(t, tagEndpointPlain):
			form := t[:2]
			if endpointSeen != "" && endpointSeen != form {
				continue
			}
			b, ok := decodeTag(t, tagEndpoint, tagEndpointPlain)
			var we wireEndpoint
			if !ok || json.Unmarshal(b, &we) != nil {
				continue
			}
			endpointSeen = form
			d.Endpoints = append(d.Endpoints, fromWireEndpoint(&we))
		}
	}
	return d
}

func decodeTag(t, compressed, plain string) ([]byte, bool) {
	if rest, ok := strings.CutPrefix(t, plain); ok {
		return []byte(rest), true
	}
	raw, err := hex.DecodeString(strings.TrimPrefix(t, compressed))
	if err != nil {
		return nil, false
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, false
	}
	defer zr.Close()
	// Tags are short; a bound keeps a hostile tag from inflating without end.
	b, err := io.ReadAll(io.LimitReader(zr, 1<<20))
	if err != nil {
		return nil, false
	}
	return b, true
}

func compressHex(b []byte) string {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	// Writes to a bytes.Buffer cannot fail.
	_, _ = zw.Write(b)
	_ = zw.Close()
	return hex.EncodeToString(buf.Bytes())
}

func toWireEndpoint(e *Endpoint) *wireEndpoint {
	return &wireEndpoint{
		Request: toWireValue(e.Request), Response: toWireValue(e.Response),
		Metadata: e.Metadata, Name: e.Name,
	}
}

func toWireValue(v *Value) *wireValue {
	if v == nil {
		return nil
	}
	w := &wireValue{Name: v.Name, Type: v.Type}
	for _, x := range v.Values {
		w.Values = append(w.Values, toWireValue(x))
	}
	return w
}

func fromWireEndpoint(w *wireEndpoint) *Endpoint {
	return &Endpoint{
		Name: w.Name, Request: fromWireValue(w.Request), Response: fromWireValue(w.Response),
		Metadata: w.Metadata,
	}
}

func fromWireValue(w *wireValue) *Value {
	if w == nil {
		return nil
	}
	v := &Value{Name: w.Name, Type: w.Type}
	for _, x := range w.Values {
		v.Values = append(v.Values, fromWireValue(x))
	}
	return v
}
