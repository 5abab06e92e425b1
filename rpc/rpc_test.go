package rpc_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	ringOnce sync.Once
	ring     *fields.Keyring
	ringErr  error
)

// testKeyring returns the keyring shared by the services of these tests,
// so that what one seals another opens.
func testKeyring(t *testing.T) *fields.Keyring {
	t.Helper()
	ringOnce.Do(func() {
		ks, err := fields.NewKeyset()
		if err != nil {
			ringErr = err
			return
		}
		ring, ringErr = fields.NewKeyring(map[string]*fields.Keyset{fields.DefaultKeyset: ks})
	})
	if ringErr != nil {
		t.Fatal(ringErr)
	}
	return ring
}

// whoami answers Validate with the caller's verified identity and the
// node that served it.
type whoami struct {
	authv1.UnimplementedAuthServiceServer
	node string
}

func (w *whoami) Validate(ctx context.Context, _ *authv1.ValidateRequest) (*authv1.ValidateResponse, error) {
	id, ok := security.PeerFromContext(ctx)
	if !ok {
		return nil, errors.New("no peer in context")
	}
	return &authv1.ValidateResponse{Valid: true, UserId: id.String() + "@" + w.node}, nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startService(t *testing.T, ca *security.CA, reg registry.Registry, name string, opts ...rpc.Option) *rpc.Service {
	t.Helper()
	id, err := ca.Identity(name)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]rpc.Option{rpc.WithIdentity(id), rpc.WithRegistry(reg), rpc.WithoutSignalHandling(),
		rpc.WithKeyring(testKeyring(t))}, opts...)
	svc, err := rpc.NewService(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	authv1.RegisterAuthServiceServer(svc.Server(), &whoami{node: "n"})
	if err := svc.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop(context.Background()) })
	return svc
}

func TestNewServiceRefusesMissingOrWrongIdentity(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	other, _ := ca.Identity("other")
	dir := t.TempDir()

	tests := []struct {
		name string
		opts []rpc.Option
		is   error
		says string
	}{
		{name: "no identity", is: rpc.ErrNoIdentity, says: "moat certs issue greeter"},
		{name: "identity of another service", opts: []rpc.Option{rpc.WithIdentity(other)},
			is: rpc.ErrIdentityMismatch, says: `identity of "other"`},
		{name: "missing files", opts: []rpc.Option{rpc.WithIdentityFiles(dir+"/a.pem", dir+"/a-key.pem", dir+"/ca.pem")},
			is: security.ErrMissingFile, says: "does not exist"},
		{name: "bad address", opts: []rpc.Option{rpc.WithIdentity(mustIdentity(t, ca, "greeter")),
			rpc.WithAddress("nowhere")}, says: "not host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc, err := rpc.NewService("greeter", tt.opts...)
			if err == nil {
				svc.Stop(context.Background())
				t.Fatal("NewService accepted the configuration")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.says) || !strings.HasPrefix(err.Error(), "rpc: ") {
				t.Fatalf("error %q should start with 'rpc: ' and say %q", err, tt.says)
			}
		})
	}
	if _, err := rpc.NewService("Bad Name", rpc.WithIdentity(other)); err == nil {
		t.Fatal("invalid service name accepted")
	}
}

func mustIdentity(t *testing.T, ca *security.CA, name string) *security.Identity {
	t.Helper()
	id, err := ca.Identity(name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCallCarriesVerifiedCallerIdentity(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	startService(t, ca, reg, "auth")
	caller := startService(t, ca, reg, "caller")

	conn, err := caller.Client().Conn("auth")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := authv1.NewAuthServiceClient(conn).Validate(ctxT(t), &authv1.ValidateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetUserId(); got != "spiffe://moat.test/svc/caller@n" {
		t.Fatalf("handler saw caller %q", got)
	}
	again, _ := caller.Client().Conn("auth")
	if again != conn {
		t.Fatal("Conn does not reuse the connection")
	}
}

func TestRoundRobinAcrossNodes(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	seen := map[string]bool{}
	for _, node := range []string{"a", "b"} {
		id := mustIdentity(t, ca, "auth")
		svc, err := rpc.NewService("auth", rpc.WithIdentity(id), rpc.WithRegistry(reg),
			rpc.WithKeyring(testKeyring(t)))
		if err != nil {
			t.Fatal(err)
		}
		authv1.RegisterAuthServiceServer(svc.Server(), &whoami{node: node})
		if err := svc.Start(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Stop(context.Background()) })
	}
	conn, err := rpc.Dial(reg, mustIdentity(t, ca, "caller"), "auth", rpc.WithDialKeyring(testKeyring(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv1.NewAuthServiceClient(conn)
	for range 20 {
		resp, err := client.Validate(ctxT(t), &authv1.ValidateRequest{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.GetUserId()[strings.LastIndex(resp.GetUserId(), "@")+1:]] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("calls reached nodes %v, want both a and b", seen)
	}
}

// hookRecorder collects the reasons of refused server handshakes.
type hookRecorder struct {
	mu     sync.Mutex
	events []security.HandshakeEvent
}

func (h *hookRecorder) hook(ev security.HandshakeEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
}

func (h *hookRecorder) waitRefusal(t *testing.T, want security.Reason) security.HandshakeEvent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		for _, ev := range h.events {
			if ev.Side == "server" && ev.Reason == want {
				h.mu.Unlock()
				return ev
			}
		}
		h.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t.Fatalf("no server refusal with reason %q; saw %+v", want, h.events)
	return security.HandshakeEvent{}
}

// badClient is a client the server must refuse at the handshake, and the
// reason it must give.
type badClient struct {
	name  string
	creds credentials.TransportCredentials
	want  security.Reason
}

// badClients returns one client of each kind the server refuses: plaintext,
// no certificate, another CA, TLS 1.2, expired certificate.
func badClients(t *testing.T, ca *security.CA) []badClient {
	t.Helper()
	otherCA, _ := security.NewCA("moat.test")
	good, _ := ca.Issue("caller")
	foreign, _ := otherCA.Issue("caller")
	expired, _ := ca.Issue("caller", security.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))

	pair := func(is *security.Issued) []tls.Certificate {
		c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	roots := mustIdentity(t, ca, "caller").Bundle()
	tlsClient := func(certs []tls.Certificate, maxVersion uint16) credentials.TransportCredentials {
		return credentials.NewTLS(&tls.Config{
			Certificates: certs, RootCAs: roots, ServerName: "localhost", MaxVersion: maxVersion,
		})
	}
	return []badClient{
		{"plaintext gRPC client", insecure.NewCredentials(), security.ReasonNotTLS},
		{"TLS client without certificate", tlsClient(nil, 0), security.ReasonNoCertificate},
		{"certificate from another CA", tlsClient(pair(foreign), 0), security.ReasonUntrusted},
		{"client limited to TLS 1.2", tlsClient(pair(good), tls.VersionTLS12), security.ReasonTLSVersion},
		{"expired client certificate", tlsClient(pair(expired), 0), security.ReasonExpired},
	}
}

// callWith makes one call to svc with creds and returns its error.
func callWith(t *testing.T, svc *rpc.Service, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(svc.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = authv1.NewAuthServiceClient(conn).Validate(ctx, &authv1.ValidateRequest{})
	return err
}

func TestServerRefusesBadClientsAtHandshake(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	tests := badClients(t, ca)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &hookRecorder{}
			reg := registry.NewMemory()
			svc := startService(t, ca, reg, "auth", rpc.WithHandshakeHook(rec.hook))
			if err := callWith(t, svc, tt.creds); err == nil {
				t.Fatal("call succeeded")
			}
			ev := rec.waitRefusal(t, tt.want)
			if ev.Remote == nil || ev.Err == nil {
				t.Fatalf("refusal event lacks remote address or error: %+v", ev)
			}
		})
	}
}

func TestClientRefusesServerWithAnotherIdentity(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	// An "auth" node whose registry entry points at a server that is
	// really "impostor": the registry is not trusted.
	impostor := startService(t, ca, registry.NewMemory(), "impostor")
	err := reg.Register(ctxT(t), &registry.Service{Name: "auth", Nodes: []*registry.Node{
		{ID: "auth-1", Address: impostor.Addr().String()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &hookRecorder{}
	caller := startService(t, ca, reg, "caller", rpc.WithHandshakeHook(rec.hook))
	conn, _ := caller.Client().Conn("auth")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = authv1.NewAuthServiceClient(conn).Validate(ctx, &authv1.ValidateRequest{})
	if err == nil {
		t.Fatal("call to an impostor succeeded")
	}
	if !strings.Contains(err.Error(), "this connection is for") {
		t.Fatalf("error does not explain the identity mismatch: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	found := false
	for _, ev := range rec.events {
		found = found || (ev.Side == "client" && ev.Reason == security.ReasonWrongIdentity &&
			ev.Peer == "spiffe://moat.test/svc/impostor")
	}
	if !found {
		t.Fatalf("no client refusal event naming the impostor: %+v", rec.events)
	}
}

func TestStopDeregistersAndIsIdempotent(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	svc := startService(t, ca, reg, "auth")
	if _, err := reg.GetService(ctxT(t), "auth"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.GetService(ctxT(t), "auth"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after Stop: %v", err)
	}
	if err := svc.Stop(ctxT(t)); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := svc.Start(ctxT(t)); !errors.Is(err, rpc.ErrAlreadyStarted) {
		t.Fatalf("Start after Stop: %v", err)
	}
	if _, err := svc.Client().Conn("x"); !errors.Is(err, rpc.ErrStopped) {
		t.Fatalf("Conn after Stop: %v", err)
	}
}

func TestRunStopsOnContextCancel(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	svc, err := rpc.NewService("auth", rpc.WithIdentity(mustIdentity(t, ca, "auth")),
		rpc.WithRegistry(reg), rpc.WithoutSignalHandling(), rpc.WithKeyring(testKeyring(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := reg.GetService(context.Background(), "auth"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not register")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := reg.GetService(context.Background(), "auth"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after Run returned: %v", err)
	}
}
