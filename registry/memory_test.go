package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moatrpc/moat/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func node(id, addr string) *registry.Node { return &registry.Node{ID: id, Address: addr} }

func TestMemoryRegistry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := registry.NewMemory()
	if _, err := m.GetService(ctx, "auth"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("empty registry: %v", err)
	}
	v1 := &registry.Service{Name: "auth", Version: "1", Nodes: []*registry.Node{node("a1", "127.0.0.1:1")}}
	v2 := &registry.Service{Name: "auth", Version: "2", Nodes: []*registry.Node{node("a2", "127.0.0.1:2")}}
	for _, s := range []*registry.Service{v1, v2} {
		if err := m.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := m.GetService(ctx, "auth")
	if err != nil || len(got) != 2 {
		t.Fatalf("GetService = %v, %v; want two versions", got, err)
	}
	if addrs := registry.Addresses(got); len(addrs) != 2 || addrs[0] != "127.0.0.1:1" {
		t.Fatalf("Addresses = %v", addrs)
	}
	// Results are copies: changing them does not change the registry.
	got[0].Nodes[0].Address = "tampered"
	again, _ := m.GetService(ctx, "auth")
	if registry.Addresses(again)[0] != "127.0.0.1:1" {
		t.Fatal("GetService returned shared state")
	}
	list, _ := m.ListServices(ctx)
	if len(list) != 1 || list[0].Name != "auth" {
		t.Fatalf("ListServices = %v", list)
	}
	if err := m.Deregister(ctx, v1); err != nil {
		t.Fatal(err)
	}
	got, _ = m.GetService(ctx, "auth")
	if len(got) != 1 || got[0].Version != "2" {
		t.Fatalf("after deregister: %+v", got)
	}
}

func TestRegisterRefusesIncompleteServices(t *testing.T) {
	t.Parallel()
	m := registry.NewMemory()
	for _, s := range []*registry.Service{
		nil,
		{Name: ""},
		{Name: "auth"},
		{Name: "auth", Nodes: []*registry.Node{{ID: "x"}}},
	} {
		if err := m.Register(context.Background(), s); err == nil {
			t.Fatalf("Register(%+v) accepted", s)
		}
	}
}

func TestMemoryWatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m := registry.NewMemory()
	w, err := m.Watch(ctx, "auth")
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Next()
	if err != nil || len(first) != 0 {
		t.Fatalf("first Next = %v, %v; want the empty current set", first, err)
	}
	next := make(chan []*registry.Service)
	go func() {
		s, _ := w.Next()
		next <- s
	}()
	s := &registry.Service{Name: "auth", Nodes: []*registry.Node{node("a1", "127.0.0.1:1")}}
	if err := m.Register(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := <-next; len(registry.Addresses(got)) != 1 {
		t.Fatalf("watch after register: %v", got)
	}
	w.Stop()
	if _, err := w.Next(); !errors.Is(err, registry.ErrWatcherStopped) {
		t.Fatalf("Next after Stop: %v", err)
	}
}
