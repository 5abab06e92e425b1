package e2e

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/services"
	"github.com/moatrpc/moat/services/scenario"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// An eavesdropper between the caller and profile, between profile and
// auth, and between the services and Consul sees TLS records only: not one
// password, session token, name, phone, e-mail or street of the scenario.
func TestEavesdropperSeesNoSecrets(t *testing.T) {
	e := startEnv(t)
	consulRelay := newRelay(t, e.Consul.Addr())
	authAddr, profileAddr := freeAddr(t), freeAddr(t)
	authRelay := newRelay(t, authAddr)
	profileRelay := newRelay(t, profileAddr)
	natsRelay := newRelay(t, strings.TrimPrefix(e.NATS.ClientURL(), "tls://"))
	natsURL := "MOAT_NATS_URL=tls://" + natsRelay.addr()

	authProc := e.startProc("auth", "MOAT_CONSUL_ADDR="+consulRelay.addr(),
		"MOAT_ADDRESS="+authAddr, "MOAT_ADVERTISE="+authRelay.addr(), natsURL)
	profileProc := e.startProc("profile", "MOAT_CONSUL_ADDR="+consulRelay.addr(),
		"MOAT_ADDRESS="+profileAddr, "MOAT_ADVERTISE="+profileRelay.addr(), natsURL)
	auditProc := e.startProc("audit", "MOAT_CONSUL_ADDR="+consulRelay.addr(), natsURL)

	reg := e.registry("caller", consulRelay.addr())
	for _, name := range []string{"auth", "profile", "audit"} {
		waitFor(t, 20*time.Second, name+" registered", func() bool {
			_, err := reg.GetService(ctxT(t, 5*time.Second), name)
			return err == nil
		})
	}
	caller := e.identity("caller")
	authConn, err := rpc.Dial(reg, caller, "auth", e.keyring())
	if err != nil {
		t.Fatal(err)
	}
	defer authConn.Close()
	profileConn, err := rpc.Dial(reg, caller, "profile", e.keyring())
	if err != nil {
		t.Fatal(err)
	}
	defer profileConn.Close()

	users, err := services.Users()
	if err != nil {
		t.Fatal(err)
	}
	res := scenario.Run(ctxT(t, time.Minute), authConn, profileConn, users, 2)
	if len(res.Errors) > 0 || res.Calls != 6*len(users) {
		t.Fatalf("scenario: %d calls, errors %v", res.Calls, res.Errors)
	}
	secrets := append(services.Secrets(users), res.Tokens...)
	waitFor(t, 10*time.Second, "audit recorded every update", func() bool {
		return strings.Count(auditProc.logs(), "audit: profile updated") == res.Updates
	})

	for _, c := range []struct {
		name  string
		relay *relay
	}{
		{"caller and services -> auth", authRelay},
		{"caller -> profile", profileRelay},
		{"services -> Consul", consulRelay},
		{"services -> NATS (profile.updated events)", natsRelay},
	} {
		data, conns := c.relay.capture()
		if conns == 0 || len(data) < 1000 {
			t.Fatalf("%s: relay carried %d connections, %d bytes; the traffic did not go through it",
				c.name, conns, len(data))
		}
		// NATS greets in clear (INFO, with no data in it) before TLS.
		if data[0] != 0x16 && !bytes.HasPrefix(data, []byte("INFO ")) {
			t.Fatalf("%s: first byte %#x is not a TLS handshake record", c.name, data[0])
		}
		if found := containsAny(data, secrets); len(found) > 0 {
			t.Fatalf("%s: %d secrets of the scenario readable on the wire", c.name, len(found))
		}
		// The relay must be able to see a plaintext value if there was
		// one: the usernames are sent in the same messages and must not be
		// visible either, which shows the capture is really ciphertext.
		if found := containsAny(data, []string{users[0].Username, "GetProfile", "AuthService"}); len(found) > 0 {
			t.Fatalf("%s: plaintext on the wire: %v", c.name, found)
		}
	}

	// The services log every call with its messages, redacted: markers,
	// never a secret of the scenario.
	for _, p := range []*proc{authProc, profileProc, auditProc} {
		logs := p.logs()
		if p != auditProc && (!strings.Contains(logs, "[REDACTED]") || !strings.Contains(logs, "grpc.request.content")) {
			t.Fatalf("%s logs show no redacted payloads:\n%s", p.name, logs)
		}
		if found := containsAny([]byte(logs), secrets); len(found) > 0 {
			t.Fatalf("%s logs hold %d secrets of the scenario", p.name, len(found))
		}
	}
}

// Register -> discover -> call; stop -> gone; killed -> leaves the healthy
// set after its TTL.
func TestConsulLifecycle(t *testing.T) {
	e := startEnv(t)
	reg := e.registry("caller", e.Consul.Addr())
	auth := e.startProc("auth", "MOAT_REGISTER_TTL=2s")

	waitFor(t, 20*time.Second, "auth registered", func() bool {
		_, err := reg.GetService(ctxT(t, 5*time.Second), "auth")
		return err == nil
	})
	svcs, _ := reg.GetService(ctxT(t, 5*time.Second), "auth")
	node := svcs[0].Nodes[0]
	if svcs[0].Version != "1.0.0" || node.Metadata[registry.MetaIdentity] != "spiffe://moat.test/svc/auth" ||
		node.Metadata[registry.MetaProtocol] != "grpc" {
		t.Fatalf("registration %+v / %+v", svcs[0], node)
	}
	conn, err := rpc.Dial(reg, e.identity("caller"), "auth", e.keyring())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv1.NewAuthServiceClient(conn)
	users, _ := services.Users()
	if _, err := client.Login(ctxT(t, 10*time.Second), &authv1.LoginRequest{
		Username: users[0].Username, Password: users[0].Password}); err != nil {
		t.Fatalf("call through Consul: %v", err)
	}

	// A clean stop deregisters at once.
	auth.stop(t)
	if _, err := reg.GetService(ctxT(t, 5*time.Second), "auth"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after SIGTERM: %v, want not found", err)
	}

	// A killed process leaves its registration behind; the TTL check
	// takes it out of the healthy set.
	killed := e.startProc("auth", "MOAT_REGISTER_TTL=2s")
	waitFor(t, 20*time.Second, "auth registered again", func() bool {
		_, err := reg.GetService(ctxT(t, 5*time.Second), "auth")
		return err == nil
	})
	killed.kill()
	took := waitFor(t, 15*time.Second, "killed node leaves the healthy set", func() bool {
		_, err := reg.GetService(ctxT(t, 5*time.Second), "auth")
		return errors.Is(err, registry.ErrNotFound)
	})
	t.Logf("killed node left the healthy set after %v (TTL 2s)", took.Round(100*time.Millisecond))
}

// A restarted dev agent knows nothing; services register again by
// themselves and calls resume. While the agent is down, known nodes keep
// serving, for new connections too.
func TestConsulRestart(t *testing.T) {
	e := startEnv(t)
	reg := e.registry("caller", e.Consul.Addr())
	e.startProc("auth", "MOAT_REGISTER_TTL=2s")
	waitFor(t, 20*time.Second, "auth registered", func() bool {
		_, err := reg.GetService(ctxT(t, 5*time.Second), "auth")
		return err == nil
	})
	users, _ := services.Users()
	login := func(conn grpc.ClientConnInterface) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := authv1.NewAuthServiceClient(conn).Login(ctx, &authv1.LoginRequest{
			Username: users[1].Username, Password: users[1].Password}, grpc.WaitForReady(true))
		return err
	}

	e.Consul.Kill()
	if _, err := reg.GetService(ctxT(t, 5*time.Second), "auth"); err != nil {
		t.Fatalf("cached nodes not served while Consul is down: %v", err)
	}
	during, err := rpc.Dial(reg, e.identity("caller"), "auth", e.keyring())
	if err != nil {
		t.Fatal(err)
	}
	defer during.Close()
	if err := login(during); err != nil {
		t.Fatalf("new connection while Consul is down: %v", err)
	}

	if err := e.Consul.Restart(ctxT(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 30*time.Second, "auth registers again in the new agent", func() bool {
		entries, _, err := reg.API().Health().Service("auth", "", true, nil)
		return err == nil && len(entries) == 1
	})
	t.Logf("auth registered again %v after the agent came back", took.Round(100*time.Millisecond))
	after, err := rpc.Dial(reg, e.identity("caller"), "auth", e.keyring())
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if err := login(after); err != nil {
		t.Fatalf("call after Consul restart: %v", err)
	}
	if err := login(during); err != nil {
		t.Fatalf("call on the old connection after Consul restart: %v", err)
	}
}

// Consul itself refuses a client without a certificate from the CA.
func TestConsulRequiresClientCertificate(t *testing.T) {
	e := startEnv(t)
	other := startEnv(t)
	reg, err := registry.NewConsul(registry.WithConsulAddress(e.Consul.Addr()),
		registry.WithConsulIdentity(other.identity("caller")))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := reg.ListServices(ctxT(t, 5*time.Second)); err == nil {
		t.Fatal("Consul answered a client of another CA")
	}
	if _, err := registry.NewConsul(registry.WithConsulAddress(e.Consul.Addr())); err == nil {
		t.Fatal("NewConsul without identity")
	}

	// The server RPC port refuses plaintext too: a plaintext RPC (type
	// byte 0, then a msgpack request) gets the connection closed, not an
	// answer.
	conn, err := net.DialTimeout("tcp", e.Consul.ServerAddr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte{0x00, 0x82, 0xa6, 'M', 'e', 't', 'h', 'o', 'd', 0xab,
		'S', 't', 'a', 't', 'u', 's', '.', 'P', 'i', 'n', 'g', 0xa3, 'S', 'e', 'q', 0x00, 0x80})
	buf := make([]byte, 64)
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("Consul's server port answered a plaintext RPC with %d bytes", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("Consul's server port kept a plaintext RPC connection open")
	}
}
