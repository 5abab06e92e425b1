package broker

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/moatrpc/moat/security"
)

func connected(t testing.TB, m *Memory) *Memory {
	t.Helper()
	if err := m.Connect(testContext(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Disconnect(testContext(t, 5*time.Second)); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
	return m
}

func TestMemoryPublishSubscribe(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testTrustDomain)
	shop := identity(t, ca, "shop")
	tests := []struct {
		name          string
		opts          []Option
		wantPublisher bool
	}{
		{"without identity", nil, false},
		{"with identity", []Option{WithIdentity(shop)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := connected(t, NewMemory(tt.opts...))
			if m.String() != "memory" {
				t.Errorf("String() = %q", m.String())
			}
			rec := newRecorder(1)
			if _, err := m.Subscribe("orders.>", rec.handle); err != nil {
				t.Fatal(err)
			}
			msg := &Message{Header: map[string]string{"K": "v"}, Body: []byte("hi")}
			err := m.Publish(testContext(t, 5*time.Second), "orders.created.eu", msg)
			if err != nil {
				t.Fatal(err)
			}
			got := rec.next(t, 5*time.Second)
			if string(got.msg.Body) != "hi" || got.msg.Header["K"] != "v" ||
				got.ev.Topic != "orders.created.eu" {
				t.Errorf("got %+v %+v", got.msg, got.ev)
			}
			if got.ev.Publisher.IsZero() == tt.wantPublisher {
				t.Errorf("publisher %q, want present=%v", got.ev.Publisher, tt.wantPublisher)
			}
		})
	}
}

func TestMemoryQueueGroup(t *testing.T) {
	t.Parallel()
	m := connected(t, NewMemory())
	const n = 90
	members := []*recorder{newRecorder(n), newRecorder(n), newRecorder(n)}
	for _, r := range members {
		if _, err := m.Subscribe("jobs.run", r.handle, WithQueue("workers")); err != nil {
			t.Fatal(err)
		}
	}
	all := newRecorder(n)
	if _, err := m.Subscribe("jobs.*", all.handle); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 10*time.Second)
	for i := range n {
		if err := m.Publish(ctx, "jobs.run", &Message{Body: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "all delivered", func() bool {
		return members[0].count()+members[1].count()+members[2].count() == n && all.count() == n
	})
	for i, r := range members {
		if c := r.count(); c != n/3 {
			t.Errorf("member %d got %d, want %d (round robin)", i, c, n/3)
		}
	}
}

// TestMemorySharedBus runs two services with their own identities on one
// bus: the subscriber sees who published and can restrict publishers.
func TestMemorySharedBus(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testTrustDomain)
	refused := newRefusals()
	bus := NewMemory(WithIdentity(identity(t, ca, "billing")), WithRefusalHook(refused.hook))
	billing := connected(t, bus)
	shop := connected(t, billing.As(identity(t, ca, "shop")))
	auth := connected(t, billing.As(identity(t, ca, "auth")))

	rec := newRecorder(4)
	_, err := billing.Subscribe("orders.created", rec.handle, WithPublishers("shop"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 5*time.Second)
	if err := auth.Publish(ctx, "orders.created", &Message{Body: []byte("from auth")}); err != nil {
		t.Fatal(err)
	}
	if ev := refused.next(t, 5*time.Second); ev.Reason != ReasonPublisherNotAllowed {
		t.Errorf("refusal %q, want %q", ev.Reason, ReasonPublisherNotAllowed)
	}
	if err := shop.Publish(ctx, "orders.created", &Message{Body: []byte("from shop")}); err != nil {
		t.Fatal(err)
	}
	got := rec.next(t, 5*time.Second)
	want, _ := security.ServiceID(testTrustDomain, "shop")
	if string(got.msg.Body) != "from shop" || got.ev.Publisher != want {
		t.Errorf("got %q from %v", got.msg.Body, got.ev.Publisher)
	}

	// A service without identity on the bus publishes unsigned events,
	// which verifying subscribers refuse.
	anon := connected(t, billing.As(nil))
	if err := anon.Publish(ctx, "orders.created", &Message{Body: []byte("anon")}); err != nil {
		t.Fatal(err)
	}
	if ev := refused.next(t, 5*time.Second); ev.Reason != ReasonUnsigned {
		t.Errorf("refusal %q, want %q", ev.Reason, ReasonUnsigned)
	}
}

func TestMemoryLifecycle(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	ctx := testContext(t, 5*time.Second)
	h := newRecorder(1).handle
	if err := m.Publish(ctx, "a.b", &Message{}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish before Connect: %v", err)
	}
	if _, err := m.Subscribe("a.b", h); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Subscribe before Connect: %v", err)
	}
	if err := m.Connect(ctx); err != nil {
		t.Fatal(err)
	}

	// A handler that blocks: Publish waits for room, then gives up with ctx.
	block := make(chan struct{})
	s, err := m.Subscribe("a.b", func(context.Context, *Message) error {
		<-block
		return nil
	}, WithPendingLimits(1, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := m.Publish(ctx, "a.b", &Message{}); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := m.Publish(short, "a.b", &Message{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish to a full queue: %v", err)
	}
	close(block)
	if err := s.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := m.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Publish(ctx, "a.b", &Message{}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish after Disconnect: %v", err)
	}
}

func TestMemoryHandlerContext(t *testing.T) {
	t.Parallel()
	m := connected(t, NewMemory())
	done := make(chan error, 1)
	_, err := m.Subscribe("a.b", func(ctx context.Context, _ *Message) error {
		dl, ok := ctx.Deadline()
		switch {
		case !ok || time.Until(dl) > time.Second:
			done <- errors.New("handler context without the handler timeout")
		default:
			done <- nil
		}
		return nil
	}, WithHandlerTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Publish(testContext(t, 5*time.Second), "a.b", &Message{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called")
	}
}
