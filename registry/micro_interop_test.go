package registry_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/moatrpc/moat/registry"
)

// The helpers below stand for go-micro's side of the Consul registry. They
// are written from the format's description and share no code with
// registry/tags.go, so a wrong encoder or decoder there shows up here.

// microTag encodes a tag as go-micro writes it: prefix and the lowercase
// hex of the zlib-compressed value.
func microTag(t *testing.T, prefix string, value []byte) string {
	t.Helper()
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	if _, err := zw.Write(value); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b.Bytes())
}

// microNode is what a go-micro registry reads back from a Consul entry.
type microNode struct {
	id, address string
	version     string
	metadata    map[string]string
	endpoints   []map[string]any
}

// microDecode reads an entry as go-micro does: from its tags alone.
func microDecode(t *testing.T, e *api.ServiceEntry) microNode {
	t.Helper()
	n := microNode{
		id:       e.Service.ID,
		address:  e.Service.Address + ":" + strconv.Itoa(e.Service.Port),
		metadata: map[string]string{},
	}
	inflate := func(tag string) []byte {
		raw, err := hex.DecodeString(tag[2:])
		if err != nil {
			t.Fatalf("tag %q: %v", tag, err)
		}
		zr, err := zlib.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("tag %q: %v", tag, err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("tag %q: %v", tag, err)
		}
		return b
	}
	for _, tag := range e.Service.Tags {
		switch tag[:2] {
		case "v-":
			n.version = string(inflate(tag))
		case "t-":
			var kv map[string]string
			if err := json.Unmarshal(inflate(tag), &kv); err != nil {
				t.Fatalf("metadata tag: %v", err)
			}
			maps.Copy(n.metadata, kv)
		case "e-":
			var ep map[string]any
			if err := json.Unmarshal(inflate(tag), &ep); err != nil {
				t.Fatalf("endpoint tag: %v", err)
			}
			n.endpoints = append(n.endpoints, ep)
		}
	}
	return n
}

func TestConsulDiscoversGoMicroRegistration(t *testing.T) {
	env := startConsul(t)
	reg := env.registry(t, "caller")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	endpoint := `{"request":{"name":"Request","type":"Request","values":[{"name":"name","type":"string","values":null}]},` +
		`"response":{"name":"Response","type":"Response","values":null},` +
		`"metadata":{"stream":"false"},"name":"Greeter.Hello"}`
	nodeMeta := map[string]string{"protocol": "grpc", "server": "grpc", "registry": "consul",
		"broker": "http", "transport": "grpc"}
	tags := []string{microTag(t, "v-", []byte("1.4.0")), microTag(t, "e-", []byte(endpoint))}
	for k, v := range nodeMeta {
		b, _ := json.Marshal(map[string]string{k: v})
		tags = append(tags, microTag(t, "t-", b))
	}

	nodes := []struct {
		id      string
		port    int
		meta    map[string]string // Consul Meta; go-micro also writes it
		healthy bool
	}{
		{id: "greeter-6a1f0a0e-0001", port: 40001, meta: nodeMeta, healthy: true},
		{id: "greeter-6a1f0a0e-0002", port: 40002, healthy: true},  // tags only
		{id: "greeter-6a1f0a0e-0003", port: 40003, meta: nodeMeta}, // critical
	}
	agent := reg.API().Agent()
	for _, n := range nodes {
		err := agent.ServiceRegister(&api.AgentServiceRegistration{
			ID: n.id, Name: "greeter", Address: "127.0.0.1", Port: n.port, Tags: tags, Meta: n.meta,
			Check: &api.AgentServiceCheck{TTL: "30s", DeregisterCriticalServiceAfter: "65s"},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent.ServiceDeregister(n.id) })
		// go-micro passes its TTL check right after registering.
		if n.healthy {
			if err := agent.PassTTL("service:"+n.id, ""); err != nil {
				t.Fatal(err)
			}
		}
	}

	got, err := reg.GetService(ctx, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("GetService returned %d versions, want 1", len(got))
	}
	s := got[0]
	if s.Name != "greeter" || s.Version != "1.4.0" {
		t.Fatalf("service %q version %q", s.Name, s.Version)
	}
	if len(s.Nodes) != 2 {
		t.Fatalf("nodes %v: want the two passing ones only", registry.Addresses(got))
	}
	for i, n := range s.Nodes {
		if n.ID != nodes[i].id || n.Address != "127.0.0.1:"+strconv.Itoa(nodes[i].port) {
			t.Fatalf("node %d = %s at %s", i, n.ID, n.Address)
		}
		if !maps.Equal(n.Metadata, nodeMeta) {
			t.Fatalf("node %s metadata %v, want %v", n.ID, n.Metadata, nodeMeta)
		}
	}
	if len(s.Endpoints) != 1 {
		t.Fatalf("endpoints %v", s.Endpoints)
	}
	e := s.Endpoints[0]
	if e.Name != "Greeter.Hello" || e.Request.Name != "Request" || len(e.Request.Values) != 1 ||
		e.Request.Values[0].Type != "string" || e.Response.Type != "Response" || e.Metadata["stream"] != "false" {
		t.Fatalf("endpoint %+v request %+v response %+v", e, e.Request, e.Response)
	}

	// The resolver's watch sees the same passing nodes.
	w, err := reg.Watch(ctx, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	snap, err := w.Next()
	if err != nil {
		t.Fatal(err)
	}
	if addrs := registry.Addresses(snap); strings.Join(addrs, ",") != "127.0.0.1:40001,127.0.0.1:40002" {
		t.Fatalf("watch saw %v", addrs)
	}
}

func TestGoMicroDecodesMoatRegistration(t *testing.T) {
	env := startConsul(t)
	reg := env.registry(t, "greeter")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	svc := &registry.Service{
		Name: "greeter", Version: "2.0.0",
		Endpoints: []*registry.Endpoint{
			{Name: "GreeterService.Hello", Metadata: map[string]string{"grpc_service": "greeter.v1.GreeterService"}},
			{Name: "GreeterService.Watch", Metadata: map[string]string{"grpc_service": "greeter.v1.GreeterService",
				"stream": "true"}},
		},
		Nodes: []*registry.Node{{ID: "greeter-0123456789abcdef", Address: "127.0.0.1:41000",
			Metadata: map[string]string{
				registry.MetaProtocol: "grpc", registry.MetaServer: "moat", registry.MetaTransport: "grpc",
				registry.MetaRegistry: "consul", registry.MetaIdentity: "spiffe://moat.test/svc/greeter",
			}}},
	}
	if err := reg.Register(ctx, svc, registry.WithTTL(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Deregister(context.Background(), svc) })

	entries, _, err := reg.API().Health().Service("greeter", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d passing entries, want 1", len(entries))
	}
	n := microDecode(t, entries[0])
	tests := []struct {
		name      string
		got, want any
	}{
		{"id", n.id, "greeter-0123456789abcdef"},
		{"address", n.address, "127.0.0.1:41000"},
		{"version", n.version, "2.0.0"},
		{"metadata", n.metadata, svc.Nodes[0].Metadata},
		{"endpoint count", len(n.endpoints), 2},
		{"first endpoint", n.endpoints[0]["name"], "GreeterService.Hello"},
		{"stream mark", n.endpoints[1]["metadata"].(map[string]any)["stream"], "true"},
		{"registration meta", entries[0].Service.Meta, svc.Nodes[0].Metadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !equalAny(tt.got, tt.want) {
				t.Fatalf("%s = %v, want %v", tt.name, tt.got, tt.want)
			}
		})
	}
	for _, k := range []string{"request", "response", "metadata", "name"} {
		if _, ok := n.endpoints[0][k]; !ok {
			t.Fatalf("endpoint JSON lacks %q: %v", k, n.endpoints[0])
		}
	}
}

func equalAny(a, b any) bool {
	am, aok := a.(map[string]string)
	bm, bok := b.(map[string]string)
	if aok && bok {
		return maps.Equal(am, bm)
	}
	return a == b
}
