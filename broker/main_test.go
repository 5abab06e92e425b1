package broker

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moatrpc/moat/security"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testTrustDomain = "moat.test"

// testEnv is an embedded NATS server over mTLS on loopback with the CA
// that issued its certificate.
type testEnv struct {
	ca  *security.CA
	srv *Embedded
}

func newEnv(t testing.TB, opts ...EmbeddedOption) *testEnv {
	t.Helper()
	return newEnvAs(t, "nats", opts...)
}

// newEnvAs starts a server presenting the identity of service.
func newEnvAs(t testing.TB, service string, opts ...EmbeddedOption) *testEnv {
	t.Helper()
	ca := newCA(t, testTrustDomain)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts = append([]EmbeddedOption{WithStoreDir(t.TempDir())}, opts...)
	srv, err := StartEmbedded(ctx, identity(t, ca, service), opts...)
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return &testEnv{ca: ca, srv: srv}
}

func newCA(t testing.TB, td string) *security.CA {
	t.Helper()
	ca, err := security.NewCA(td)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func identity(
	t testing.TB,
	ca *security.CA,
	service string,
	opts ...security.IssueOption,
) *security.Identity {
	t.Helper()
	id, err := ca.Identity(service, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// client returns a connected NATS broker for service, disconnected when
// the test ends.
func (e *testEnv) client(t testing.TB, service string, opts ...Option) *NATS {
	t.Helper()
	return e.clientAs(t, identity(t, e.ca, service), opts...)
}

func (e *testEnv) clientAs(t testing.TB, src security.Source, opts ...Option) *NATS {
	t.Helper()
	b := e.newClient(t, src, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	return b
}

func (e *testEnv) newClient(t testing.TB, src security.Source, opts ...Option) *NATS {
	t.Helper()
	opts = append([]Option{
		WithIdentity(src),
		WithURL(e.srv.ClientURL()),
		WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond),
	}, opts...)
	b, err := NewNATS(opts...)
	if err != nil {
		t.Fatalf("NewNATS: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Disconnect(ctx); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
	return b
}

// received is one event a recorder saw.
type received struct {
	ev  Event
	msg *Message
}

// recorder is a handler that records what it receives.
type recorder struct {
	ch   chan received
	fail func(Event) error // nil: accept everything

	mu  sync.Mutex
	got []received
}

func newRecorder(buffer int) *recorder {
	return &recorder{ch: make(chan received, buffer)}
}

func (r *recorder) handle(ctx context.Context, m *Message) error {
	ev, _ := EventFromContext(ctx)
	if r.fail != nil {
		if err := r.fail(ev); err != nil {
			return err
		}
	}
	rc := received{ev: ev, msg: m}
	r.mu.Lock()
	r.got = append(r.got, rc)
	r.mu.Unlock()
	select {
	case r.ch <- rc:
	default:
	}
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// next waits for the next received event.
func (r *recorder) next(t testing.TB, within time.Duration) received {
	t.Helper()
	select {
	case rc := <-r.ch:
		return rc
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
		return received{}
	}
}

// refusals collects refused events through the hook.
type refusals struct{ ch chan RefusedEvent }

func newRefusals() *refusals { return &refusals{ch: make(chan RefusedEvent, 64)} }

func (r *refusals) hook(ev RefusedEvent) {
	select {
	case r.ch <- ev:
	default:
	}
}

func (r *refusals) next(t testing.TB, within time.Duration) RefusedEvent {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(within):
		t.Fatalf("no refusal within %v", within)
		return RefusedEvent{}
	}
}

// eventually polls cond until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// safeBuffer collects log output written from several goroutines.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *safeBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// rotating is an identity source whose identity changes, as a rotated
// certificate or bundle would.
type rotating struct {
	mu sync.Mutex
	id *security.Identity
}

func (r *rotating) Current() *security.Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.id
}

func (r *rotating) set(id *security.Identity) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.id = id
}
