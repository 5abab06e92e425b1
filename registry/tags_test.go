package registry_test

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"io"
	"reflect"
	"testing"

	"github.com/moatrpc/moat/registry"
)

// The vectors below were compressed by an implementation other than Go's
// (C zlib, default level) from values written by hand following go-micro's
// tag format, so decoding them checks the format, not our own encoder.
const (
	vectorMeta     = "t-789cab562a28ca2fc94fcecf51b2524a2f2a4856aa0500468306d9"
	vectorVersion  = "v-789c33d433d033000002ce00ee"
	vectorEndpoint = "e-789c6dccc10980300c85e15d721607e8027a768380cf535ab58d8294ee6e94e241bd853fc9" +
		"972962dd90945ca6c01ee4a887c83cd4dc901ecb4fdd596c22173691d298929639247c99dadfce935f9087f2c8" +
		"ca17943482bdfd4c2c766bdb4a771150c4f6b6a89ca62a4494"
	// endpointJSON is the exact JSON go-micro writes for the endpoint.
	endpointJSON = `{"request":{"name":"HelloRequest","type":"HelloRequest","values":null},` +
		`"response":{"name":"HelloResponse","type":"HelloResponse","values":null},` +
		`"metadata":{"stream":"false"},"name":"Greeter.Hello"}`
)

var vectorService = &registry.Service{Name: "greeter", Version: "1.0.0", Endpoints: []*registry.Endpoint{{
	Name:     "Greeter.Hello",
	Request:  &registry.Value{Name: "HelloRequest", Type: "HelloRequest"},
	Response: &registry.Value{Name: "HelloResponse", Type: "HelloResponse"},
	Metadata: map[string]string{"stream": "false"},
}}}

func inflate(t *testing.T, tag string) string {
	t.Helper()
	raw, err := hex.DecodeString(tag[2:])
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeTagVectors(t *testing.T) {
	t.Parallel()
	dec := registry.DecodeTags([]string{"other", vectorMeta, vectorEndpoint, vectorVersion})
	if dec.Version != "1.0.0" || !reflect.DeepEqual(dec.Metadata, map[string]string{"protocol": "grpc"}) {
		t.Fatalf("decoded %+v", dec)
	}
	if len(dec.Endpoints) != 1 || !reflect.DeepEqual(dec.Endpoints[0], vectorService.Endpoints[0]) {
		t.Fatalf("decoded endpoint %+v", dec.Endpoints)
	}
}

func TestEncodeTagsMatchesFormat(t *testing.T) {
	t.Parallel()
	n := &registry.Node{ID: "greeter-1", Address: "127.0.0.1:1", Metadata: map[string]string{"protocol": "grpc"}}
	tags, err := registry.EncodeTags(vectorService, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 3 {
		t.Fatalf("tags = %v", tags)
	}
	for i, want := range []string{inflate(t, vectorMeta), endpointJSON, "1.0.0"} {
		if got := inflate(t, tags[i]); got != want {
			t.Fatalf("tag %d holds %s, want %s", i, got, want)
		}
	}
	if !reflect.DeepEqual(registry.DecodeTags(tags), registry.DecodeTags([]string{vectorMeta, vectorEndpoint, vectorVersion})) {
		t.Fatal("encoded tags do not decode like the vectors")
	}
}

func TestDecodePlainAndBrokenTags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tags []string
		want registry.DecodedTags
	}{
		{"plain forms", []string{`t={"a":"b"}`, "v=2.1"},
			registry.DecodedTags{Version: "2.1", Metadata: map[string]string{"a": "b"}}},
		{"first version form wins", []string{"v=first", vectorVersion},
			registry.DecodedTags{Version: "first"}},
		{"bad hex ignored", []string{"v-zz", "t-0102"}, registry.DecodedTags{}},
		{"bad json ignored", []string{"t={not json", "e=[]"}, registry.DecodedTags{}},
	}
	for _, tt := range tests {
		if got := registry.DecodeTags(tt.tags); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func FuzzDecodeTags(f *testing.F) {
	f.Add(vectorMeta, vectorEndpoint)
	f.Add("v=1", `e={"name":"x"}`)
	f.Fuzz(func(t *testing.T, a, b string) {
		_ = registry.DecodeTags([]string{a, b})
	})
}
