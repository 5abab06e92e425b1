package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestDurableReceivesWhatWasPublishedWhileDown(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	sub := env.client(t, "billing")
	pub := env.client(t, "shop")
	ctx := testContext(t, 30*time.Second)

	first := newRecorder(1)
	s, err := sub.Subscribe("orders.created", first.handle, WithDurable("billing"))
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(ctx, "orders.created", &Message{Body: []byte("0")}, WithPersistence())
	if err != nil {
		t.Fatal(err)
	}
	first.next(t, 10*time.Second)
	if err := s.Unsubscribe(); err != nil {
		t.Fatal(err)
	}

	const n = 50
	for i := 1; i <= n; i++ {
		msg := &Message{Body: []byte(strconv.Itoa(i))}
		if err := pub.Publish(ctx, "orders.created", msg, WithPersistence()); err != nil {
			t.Fatal(err)
		}
	}
	// Another topic of the same stream must not reach the consumer.
	err = pub.Publish(ctx, "orders.cancelled", &Message{Body: []byte("x")}, WithPersistence())
	if err != nil {
		t.Fatal(err)
	}

	back := newRecorder(n + 1)
	if _, err := sub.Subscribe("orders.created", back.handle, WithDurable("billing")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		rc := back.next(t, 10*time.Second)
		if string(rc.msg.Body) != strconv.Itoa(i) {
			t.Fatalf("event %d: got %q", i, rc.msg.Body)
		}
	}
	select {
	case rc := <-back.ch:
		t.Errorf("unexpected event %q on %s", rc.msg.Body, rc.ev.Topic)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestDurableRedeliversWhenHandlerFails(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	sub := env.client(t, "billing")
	pub := env.client(t, "shop")
	ctx := testContext(t, 30*time.Second)

	rec := newRecorder(4)
	var attempts []int
	var mu sync.Mutex
	rec.fail = func(ev Event) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, ev.Delivery)
		if ev.Delivery < 3 {
			return errors.New("not yet")
		}
		return nil
	}
	_, err := sub.Subscribe("payments.due", rec.handle, WithDurable("collector"),
		WithRedeliveryDelay(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(ctx, "payments.due", &Message{Body: []byte("p")}, WithPersistence())
	if err != nil {
		t.Fatal(err)
	}
	rc := rec.next(t, 10*time.Second)
	if rc.ev.Delivery != 3 {
		t.Errorf("accepted on delivery %d, want 3", rc.ev.Delivery)
	}
	// Acknowledged: no further delivery.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2 3]" {
		t.Errorf("deliveries %v, want [1 2 3]", attempts)
	}
}

func TestDurableSharedByName(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	pub := env.client(t, "shop")
	ctx := testContext(t, 30*time.Second)
	const n = 100
	var members []*recorder
	for range 2 {
		rec := newRecorder(n)
		members = append(members, rec)
		b := env.client(t, "billing")
		if _, err := b.Subscribe("invoices.new", rec.handle, WithDurable("billing")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		msg := &Message{Body: []byte(strconv.Itoa(i))}
		if err := pub.Publish(ctx, "invoices.new", msg, WithPersistence()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "all invoices consumed", func() bool {
		return members[0].count()+members[1].count() == n
	})
	time.Sleep(200 * time.Millisecond)
	seen := make(map[string]bool)
	for _, m := range members {
		m.mu.Lock()
		for _, rc := range m.got {
			if seen[string(rc.msg.Body)] {
				t.Errorf("invoice %s consumed twice", rc.msg.Body)
			}
			seen[string(rc.msg.Body)] = true
		}
		m.mu.Unlock()
	}
	if len(seen) != n {
		t.Errorf("%d distinct invoices, want %d", len(seen), n)
	}
}

// TestRestartMidStream restarts the server while a publisher sends
// persistent events and a durable subscriber consumes them: both clients
// reconnect on their own and every event the stream acknowledged is
// delivered.
func TestRestartMidStream(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	sub := env.client(t, "billing")
	pub := env.client(t, "shop")
	ctx := testContext(t, 90*time.Second)

	var (
		mu       sync.Mutex
		received = make(map[string]int)
	)
	_, err := sub.Subscribe("ledger.entry", func(_ context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		received[string(m.Body)]++
		return nil
	}, WithDurable("ledger"), WithAckWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}

	// Publish a first half, then keep publishing while the server
	// restarts, then a second half once it is back.
	const half = 200
	var acked []string
	publish := func() {
		t.Helper()
		body := strconv.Itoa(len(acked))
		err := pub.Publish(ctx, "ledger.entry", &Message{Body: []byte(body)}, WithPersistence())
		if err != nil {
			t.Fatalf("publish %s: %v", body, err)
		}
		acked = append(acked, body)
	}
	for range half {
		publish()
	}
	restarted := make(chan error, 1)
	start := time.Now()
	go func() { restarted <- env.srv.Restart(ctx) }()
	during := 0
	for waiting := true; waiting; {
		select {
		case err := <-restarted:
			if err != nil {
				t.Fatal(err)
			}
			waiting = false
		default:
			publish()
			during++
		}
	}
	restartTook := time.Since(start)
	for range half {
		publish()
	}
	publishedBy := time.Since(start)
	if during == 0 {
		t.Error("no publish overlapped the restart")
	}

	eventually(t, 60*time.Second, "every acknowledged event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range acked {
			if received[b] == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("restart %v, published by %v, delivered by %v",
		restartTook, publishedBy, time.Since(start))
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, c := range received {
		dups += c - 1
	}
	t.Logf("%d events acknowledged (%d during the restart), %d delivered, %d redelivered",
		len(acked), during, len(received), dups)
}
