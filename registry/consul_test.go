package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moatrpc/moat/internal/devenv"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/security"
)

type consulEnv struct {
	agent *devenv.Consul
	ca    *security.CA
}

func startConsul(t *testing.T) *consulEnv {
	t.Helper()
	ca, err := security.NewCA("moat.test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	agent, err := devenv.StartConsul(ctx, devenv.ConsulConfig{Dir: t.TempDir(), CA: ca})
	if err != nil {
		t.Fatalf("start consul: %v", err)
	}
	t.Cleanup(func() { agent.Stop() })
	return &consulEnv{agent: agent, ca: ca}
}

func (e *consulEnv) registry(t *testing.T, service string, opts ...registry.ConsulOption) *registry.Consul {
	t.Helper()
	id, err := e.ca.Identity(service)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]registry.ConsulOption{
		registry.WithConsulAddress(e.agent.Addr()),
		registry.WithConsulIdentity(id),
	}, opts...)
	r, err := registry.NewConsul(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestConsulRegisterDiscoverDeregister(t *testing.T) {
	env := startConsul(t)
	reg := env.registry(t, "greeter")
	ctx := context.Background()
	svc := &registry.Service{
		Name: "greeter", Version: "1.2.0",
		Nodes: []*registry.Node{{ID: "greeter-1", Address: "127.0.0.1:7001",
			Metadata: map[string]string{"protocol": "grpc"}}},
	}
	if err := reg.Register(ctx, svc, registry.WithTTL(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := reg.GetService(ctx, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Version != "1.2.0" || len(got[0].Nodes) != 1 ||
		got[0].Nodes[0].Address != "127.0.0.1:7001" || got[0].Nodes[0].Metadata["protocol"] != "grpc" {
		t.Fatalf("GetService = %+v", got[0])
	}
	// Heartbeats keep the node passing past several TTLs.
	time.Sleep(5 * time.Second)
	if _, err := reg.GetService(ctx, "greeter"); err != nil {
		t.Fatalf("after 2.5 TTLs: %v", err)
	}
	list, err := reg.ListServices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range list {
		found = found || s.Name == "greeter"
	}
	if !found {
		t.Fatalf("ListServices = %v, want greeter", list)
	}
	if err := reg.Deregister(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.GetService(ctx, "greeter"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after Deregister: err = %v, want ErrNotFound", err)
	}
}

func TestConsulRefusesToRegisterAnotherService(t *testing.T) {
	env := startConsul(t)
	reg := env.registry(t, "greeter")
	err := reg.Register(context.Background(), &registry.Service{Name: "auth",
		Nodes: []*registry.Node{{ID: "auth-1", Address: "127.0.0.1:1"}}})
	if !errors.Is(err, registry.ErrIdentityMismatch) {
		t.Fatalf("err = %v, want identity mismatch", err)
	}
}

func TestConsulWithACLs(t *testing.T) {
	ca, err := security.NewCA("moat.test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const master = "b1d8a0f4-1c2e-4c59-9a43-8d1f2d6a7e01"
	agent, err := devenv.StartConsul(ctx, devenv.ConsulConfig{Dir: t.TempDir(), CA: ca, ACLMasterToken: master})
	if err != nil {
		t.Fatalf("start consul: %v", err)
	}
	defer agent.Stop()
	env := &consulEnv{agent: agent, ca: ca}
	svc := &registry.Service{Name: "greeter",
		Nodes: []*registry.Node{{ID: "greeter-1", Address: "127.0.0.1:7001"}}}

	anonymous := env.registry(t, "greeter")
	err = anonymous.Register(ctx, svc)
	if err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("register without token: %v, want permission denied", err)
	}
	if !strings.HasPrefix(err.Error(), `registry: register "greeter"`) {
		t.Fatalf("error does not say what failed: %v", err)
	}

	withToken := env.registry(t, "greeter", registry.WithConsulToken(master))
	eventually(t, 20*time.Second, "register with the ACL token", func() bool {
		return withToken.Register(ctx, svc, registry.WithTTL(5*time.Second)) == nil
	})
	got, err := withToken.GetService(ctx, "greeter")
	if err != nil || len(got[0].Nodes) != 1 {
		t.Fatalf("GetService with token: %v %v", got, err)
	}
	if err := withToken.Deregister(ctx, svc); err != nil {
		t.Fatal(err)
	}
}
