package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatrpc/moat/security"
)

func TestNATSPublishSubscribe(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	sub := env.client(t, "billing")
	pub := env.client(t, "shop")
	rec := newRecorder(1)
	s, err := sub.Subscribe("orders.*", rec.handle)
	if err != nil {
		t.Fatal(err)
	}
	if s.Topic() != "orders.*" {
		t.Errorf("Topic() = %q", s.Topic())
	}
	flush(t, sub)

	ctx := testContext(t, 10*time.Second)
	msg := &Message{Header: map[string]string{"Trace": "abc"}, Body: []byte("order 1")}
	if err := pub.Publish(ctx, "orders.created", msg); err != nil {
		t.Fatal(err)
	}
	got := rec.next(t, 5*time.Second)
	if string(got.msg.Body) != "order 1" || got.msg.Header["Trace"] != "abc" {
		t.Errorf("got body %q header %v", got.msg.Body, got.msg.Header)
	}
	want, _ := security.ServiceID(testTrustDomain, "shop")
	if got.ev.Publisher != want || got.ev.Topic != "orders.created" || got.ev.Delivery != 1 {
		t.Errorf("event = %+v, want publisher %v on orders.created", got.ev, want)
	}
	if len(got.ev.ID) != 32 || time.Since(got.ev.Time) > time.Minute {
		t.Errorf("event id %q time %v", got.ev.ID, got.ev.Time)
	}

	if err := s.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := s.Unsubscribe(); err != nil {
		t.Fatalf("second Unsubscribe: %v", err)
	}
}

func TestNATSQueueGroup(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	const n = 300
	var members []*recorder
	for range 3 {
		b := env.client(t, "worker")
		rec := newRecorder(n)
		members = append(members, rec)
		if _, err := b.Subscribe("jobs.run", rec.handle, WithQueue("worker")); err != nil {
			t.Fatal(err)
		}
		flush(t, b)
	}
	watcher := newRecorder(n)
	w := env.client(t, "audit")
	if _, err := w.Subscribe("jobs.>", watcher.handle); err != nil {
		t.Fatal(err)
	}
	flush(t, w)

	pub := env.client(t, "scheduler")
	ctx := testContext(t, 20*time.Second)
	for i := range n {
		msg := &Message{Body: []byte(strconv.Itoa(i))}
		if err := pub.Publish(ctx, "jobs.run", msg); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, pub)

	total := func() int {
		sum := 0
		for _, m := range members {
			sum += m.count()
		}
		return sum
	}
	eventually(t, 10*time.Second, "queue group receives every job", func() bool {
		return total() == n && watcher.count() == n
	})
	time.Sleep(100 * time.Millisecond) // room for a wrongly duplicated delivery
	seen := make(map[string]bool)
	for i, m := range members {
		m.mu.Lock()
		for _, rc := range m.got {
			if seen[string(rc.msg.Body)] {
				t.Errorf("job %s delivered to more than one member", rc.msg.Body)
			}
			seen[string(rc.msg.Body)] = true
		}
		if len(m.got) == 0 {
			t.Errorf("member %d received nothing", i)
		}
		m.mu.Unlock()
	}
	if total() != n || len(seen) != n {
		t.Errorf("group received %d events, %d distinct, want %d", total(), len(seen), n)
	}
}

func TestNATSTenThousandNoLossNoDuplicates(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	const n = 10_000
	sub := env.client(t, "sink")
	var (
		mu   sync.Mutex
		seen = make(map[string]int, n)
		dups int
		done = make(chan struct{})
	)
	_, err := sub.Subscribe("load.test", func(_ context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		seen[string(m.Body)]++
		if seen[string(m.Body)] > 1 {
			dups++
		}
		if len(seen) == n {
			close(done)
		}
		return nil
	}, WithPendingLimits(2*n, 256<<20))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, sub)

	pub := env.client(t, "source")
	ctx := testContext(t, 60*time.Second)
	for i := range n {
		err := pub.Publish(ctx, "load.test", &Message{Body: []byte(strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
	}
	flush(t, pub)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		mu.Lock()
		t.Fatalf("received %d of %d", len(seen), n)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	for i := range n {
		if seen[strconv.Itoa(i)] != 1 {
			t.Fatalf("message %d received %d times", i, seen[strconv.Itoa(i)])
		}
	}
}

func TestNATSReconnectsAfterServerRestart(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	var logs safeBuffer
	sub := env.client(t, "billing", WithLogger(logs.logger()))
	pub := env.client(t, "shop")
	rec := newRecorder(16)
	if _, err := sub.Subscribe("orders.created", rec.handle); err != nil {
		t.Fatal(err)
	}
	flush(t, sub)
	ctx := testContext(t, 30*time.Second)
	if err := pub.Publish(ctx, "orders.created", &Message{Body: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	rec.next(t, 5*time.Second)

	if err := env.srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "both clients reconnect", func() bool {
		return sub.nc.IsConnected() && pub.nc.IsConnected()
	})
	// The subscription is restored by the client; publish until it
	// delivers, since the resubscription may trail the reconnection.
	for i := 0; ; i++ {
		if err := pub.Publish(ctx, "orders.created", &Message{Body: []byte("after")}); err != nil {
			t.Fatal(err)
		}
		select {
		case rc := <-rec.ch:
			if string(rc.msg.Body) != "after" {
				t.Fatalf("got %q", rc.msg.Body)
			}
			if !strings.Contains(logs.String(), "reconnected to NATS") {
				t.Errorf("no reconnection logged; log:\n%s", logs.String())
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if i == 50 {
			t.Fatal("no delivery after restart")
		}
	}
}

func TestNewNATSRefuses(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testTrustDomain)
	id := identity(t, ca, "shop")
	tests := []struct {
		name    string
		opts    []Option
		want    error
		mention string
	}{
		{"no identity", []Option{WithURL("tls://127.0.0.1:4222")}, ErrNoIdentity,
			"moat certs issue <service>"},
		{"nil identity", []Option{WithIdentity(nil), WithURL("tls://127.0.0.1:4222")},
			ErrNoIdentity, "security.LoadIdentity"},
		{"no URL", []Option{WithIdentity(id)}, ErrNoURL, "broker.WithURL"},
		{"websocket URL", []Option{WithIdentity(id), WithURL("wss://127.0.0.1:443")},
			ErrNoURL, "tls://host:port"},
		{"password in URL", []Option{WithIdentity(id), WithURL("tls://u:p@127.0.0.1:4222")},
			ErrNoURL, "certificates"},
		{"URL without host", []Option{WithIdentity(id), WithURL("tls://:4222")}, ErrNoURL,
			"no host"},
		{"bad replay cache", []Option{WithIdentity(id), WithURL("tls://127.0.0.1:1"),
			WithReplayCacheSize(0)}, ErrInvalidOption, "replay cache"},
		{"bad server identity", []Option{WithIdentity(id), WithURL("tls://127.0.0.1:1"),
			WithServerIdentity("NATS!")}, nil, "service name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewNATS(tt.opts...)
			if err == nil {
				t.Fatalf("NewNATS succeeded: %v", b)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "broker: ") && !strings.HasPrefix(msg, "security: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestNATSNotConnected(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testTrustDomain)
	b, err := NewNATS(WithIdentity(identity(t, ca, "shop")), WithURL("tls://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 5*time.Second)
	if err := b.Publish(ctx, "a.b", &Message{}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish: %v, want ErrNotConnected", err)
	}
	if _, err := b.Subscribe("a.b", newRecorder(1).handle); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Subscribe: %v, want ErrNotConnected", err)
	}
	if err := b.Disconnect(ctx); err != nil {
		t.Errorf("Disconnect before Connect: %v", err)
	}
}

func TestNATSInvalidArguments(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	b := env.client(t, "shop")
	ctx := testContext(t, 5*time.Second)
	h := newRecorder(1).handle
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"publish to wildcard", b.Publish(ctx, "a.*", &Message{}), ErrInvalidTopic},
		{"publish empty token", b.Publish(ctx, "a..b", &Message{}), ErrInvalidTopic},
		{"publish nil message", b.Publish(ctx, "a.b", nil), ErrInvalidOption},
		{"publish empty header key", b.Publish(ctx, "a.b",
			&Message{Header: map[string]string{"": "x"}}), nil},
		{"subscribe space", subErr(b.Subscribe("a b", h)), ErrInvalidTopic},
		{"subscribe > not last", subErr(b.Subscribe("a.>.b", h)), ErrInvalidTopic},
		{"subscribe nil handler", subErr(b.Subscribe("a.b", nil)), ErrInvalidOption},
		{"queue and durable", subErr(b.Subscribe("a.b", h, WithQueue("q"), WithDurable("d"))),
			ErrInvalidOption},
		{"durable on wildcard stream", subErr(b.Subscribe("*.b", h, WithDurable("d"))),
			ErrInvalidTopic},
		{"bad queue name", subErr(b.Subscribe("a.b", h, WithQueue("a.b"))), ErrInvalidOption},
		{"bad publisher", subErr(b.Subscribe("a.b", h, WithPublishers("Bad Name"))),
			ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(tt.err, tt.want) {
				t.Errorf("error %v, want %v", tt.err, tt.want)
			}
			if !strings.HasPrefix(tt.err.Error(), "broker: ") {
				t.Errorf("error %q lacks the package prefix", tt.err)
			}
		})
	}
}

func subErr(_ Subscriber, err error) error { return err }

func TestNATSBackoff(t *testing.T) {
	t.Parallel()
	n := &NATS{cfg: config{backoffBase: 100 * time.Millisecond, backoffMax: time.Second}}
	tests := []struct {
		name     string
		attempts int
		lo, hi   time.Duration
	}{
		{"first", 1, 50 * time.Millisecond, 100 * time.Millisecond},
		{"second", 2, 100 * time.Millisecond, 200 * time.Millisecond},
		{"capped", 30, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				if d := n.backoff(tt.attempts); d < tt.lo || d > tt.hi {
					t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tt.attempts, d, tt.lo, tt.hi)
				}
			}
		})
	}
}

func flush(t testing.TB, b *NATS) {
	t.Helper()
	nc, _, err := b.conn()
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		t.Fatal(fmt.Errorf("flush: %w", err))
	}
}

// A workload may join only queue groups named after its own service: an
// intruder joining audit's group does not take audit's events away.
func TestNATSQueueGroupsBelongToTheirService(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	const n = 50
	audit := newRecorder(n)
	a := env.client(t, "audit")
	if _, err := a.Subscribe("profile.updated", audit.handle, WithQueue("audit")); err != nil {
		t.Fatal(err)
	}
	flush(t, a)
	stolen := newRecorder(n)
	intruder := env.client(t, "intruder")
	// The server refuses the subscription; whether Subscribe reports it or
	// not, no event may reach the intruder.
	_, _ = intruder.Subscribe("profile.updated", stolen.handle, WithQueue("audit"))
	flush(t, intruder)
	// Its own queue group, and plain subscriptions, stay open to it.
	own := newRecorder(n)
	if _, err := intruder.Subscribe("profile.updated", own.handle, WithQueue("intruder")); err != nil {
		t.Fatal(err)
	}
	flush(t, intruder)

	pub := env.client(t, "profile")
	ctx := testContext(t, 20*time.Second)
	for i := range n {
		if err := pub.Publish(ctx, "profile.updated", &Message{Body: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, pub)
	eventually(t, 10*time.Second, "audit and the intruder's own group receive every event", func() bool {
		return audit.count() == n && own.count() == n
	})
	time.Sleep(100 * time.Millisecond)
	if got := stolen.count(); got != 0 {
		t.Fatalf("the intruder took %d of audit's events", got)
	}
}
