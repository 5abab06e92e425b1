package rpc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moatrpc/moat/broker"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
)

// eventService starts a service with its own view of the bus.
func eventService(t *testing.T, ca *security.CA, bus *broker.Memory, name string, opts ...rpc.Option) *rpc.Service {
	t.Helper()
	id := mustIdentity(t, ca, name)
	b := bus.As(id)
	if err := b.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Disconnect(context.Background()) })
	opts = append([]rpc.Option{rpc.WithIdentity(id), rpc.WithRegistry(registry.NewMemory()),
		rpc.WithoutSignalHandling(), rpc.WithBroker(b)}, opts...)
	svc, err := rpc.NewService(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop(context.Background()) })
	return svc
}

func TestPublishSubscribeSealsAndVerifies(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	bus := broker.NewMemory(broker.WithIdentity(mustIdentity(t, ca, "bus")))
	publisher := eventService(t, ca, bus, "profile", rpc.WithKeyring(testKeyring(t)))
	auditor := eventService(t, ca, bus, "audit", rpc.WithKeyring(testKeyring(t)))
	// A subscriber without the keyset: it gets the event, but the SECRET
	// field stays ciphertext.
	outsider := eventService(t, ca, bus, "outsider")

	type got struct {
		event     *profilev1.ProfileUpdated
		publisher string
	}
	audited, seen := make(chan got, 1), make(chan got, 1)
	record := func(ch chan got) func(context.Context, *profilev1.ProfileUpdated) error {
		return func(ctx context.Context, ev *profilev1.ProfileUpdated) error {
			p, _ := broker.PublisherFromContext(ctx)
			ch <- got{ev, p.String()}
			return nil
		}
	}
	if err := rpc.Subscribe(auditor, "profile.updated", record(audited), broker.WithPublishers("profile")); err != nil {
		t.Fatal(err)
	}
	if err := rpc.Subscribe(outsider, "profile.updated", record(seen)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*rpc.Service{publisher, auditor, outsider} {
		if err := s.Start(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}

	event := &profilev1.ProfileUpdated{UserId: "u-1", Phone: "+99 555 0100", SessionToken: "tok-secret"}
	if err := publisher.Publish(ctxT(t), "profile.updated", event); err != nil {
		t.Fatal(err)
	}
	if event.GetSessionToken() != "tok-secret" {
		t.Fatal("Publish changed the caller's message")
	}
	for name, ch := range map[string]chan got{"audit": audited, "outsider": seen} {
		select {
		case g := <-ch:
			if g.publisher != "spiffe://moat.test/svc/profile" {
				t.Fatalf("%s: publisher %q", name, g.publisher)
			}
			token := g.event.GetSessionToken()
			switch name {
			case "audit":
				if token != "tok-secret" {
					t.Fatalf("audit, holding the keyset, got token %q", token)
				}
			case "outsider":
				if !strings.HasPrefix(token, "moat:v1:") || strings.Contains(token, "tok-secret") {
					t.Fatalf("outsider without the keyset got token %q, want ciphertext", token)
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s got no event", name)
		}
	}

	// A service without a keyset does not publish SECRET fields in clear.
	err := outsider.Publish(ctxT(t), "profile.updated", event)
	if !errors.Is(err, rpc.ErrNoKeyset) {
		t.Fatalf("publish of a SECRET without keyset: %v", err)
	}
	// Only profile may publish to the auditor, keyset or not.
	intruder := eventService(t, ca, bus, "intruder", rpc.WithKeyring(testKeyring(t)))
	if err := intruder.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := intruder.Publish(ctxT(t), "profile.updated", &profilev1.ProfileUpdated{UserId: "u-2"}); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-audited:
		t.Fatalf("audit accepted an event from %s", g.publisher)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestPublishWithoutBroker(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	svc, err := rpc.NewService("x", rpc.WithIdentity(mustIdentity(t, ca, "x")), rpc.WithRegistry(registry.NewMemory()))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop(context.Background())
	if err := svc.Publish(context.Background(), "t", &profilev1.ProfileUpdated{}); !errors.Is(err, rpc.ErrNoBroker) {
		t.Fatalf("err = %v", err)
	}
}
