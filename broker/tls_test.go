package broker

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/moatrpc/moat/security"
)

// TestEmbeddedRefusesClients connects clients that must not get in and
// checks that each is refused, by the server for the reason expected.
func TestEmbeddedRefusesClients(t *testing.T) {
	t.Parallel()
	var serverLog safeBuffer
	env := newEnv(t, WithLogger(serverLog.logger()))
	other := newCA(t, testTrustDomain)
	valid := identity(t, env.ca, "shop")
	foreign := identity(t, other, "shop")
	trustServer := x509.NewCertPool()
	trustServer.AddCert(env.ca.Certificate())

	tests := []struct {
		name      string
		opts      []nats.Option
		serverLog string // what the server logs about the refusal, if anything
	}{
		{
			name: "certificate from another CA",
			opts: []nats.Option{nats.Secure(&tls.Config{
				MinVersion:   tls.VersionTLS13,
				ServerName:   "localhost",
				RootCAs:      trustServer,
				Certificates: []tls.Certificate{*foreign.TLSCertificate()},
			})},
			serverLog: "does not chain to the trust bundle",
		},
		{
			name: "no client certificate",
			opts: []nats.Option{nats.Secure(&tls.Config{
				MinVersion: tls.VersionTLS13,
				ServerName: "localhost",
				RootCAs:    trustServer,
			})},
			serverLog: "presented no certificate",
		},
		{
			name: "TLS 1.2",
			opts: []nats.Option{nats.Secure(&tls.Config{
				MinVersion:   tls.VersionTLS12,
				MaxVersion:   tls.VersionTLS12,
				ServerName:   "localhost",
				RootCAs:      trustServer,
				Certificates: []tls.Certificate{*valid.TLSCertificate()},
			})},
			serverLog: "requires TLS 1.3",
		},
		{
			// nats.go upgrades to TLS when the server requires it, with the
			// system roots and no client certificate: refused both ways.
			name: "nats.go without TLS options",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]nats.Option{nats.Timeout(5 * time.Second), nats.NoReconnect()},
				tt.opts...)
			nc, err := nats.Connect(strings.Replace(env.srv.ClientURL(), "tls://", "nats://", 1),
				opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connection accepted")
			}
			if tt.serverLog != "" {
				eventually(t, 5*time.Second, "server logs "+tt.serverLog, func() bool {
					return strings.Contains(serverLog.String(), tt.serverLog)
				})
			}
		})
	}
}

// TestEmbeddedRefusesPlaintext speaks the NATS protocol in plaintext and
// checks that the server neither answers nor forwards the message.
func TestEmbeddedRefusesPlaintext(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	watcher := env.client(t, "watcher")
	got := make(chan *nats.Msg, 1)
	nc, _, err := watcher.conn()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.ChanSubscribe("plain.test", got)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	flush(t, watcher)

	u, err := url.Parse(env.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("INFO does not require TLS: %s", info)
	}
	plain := "CONNECT {\"verbose\":false}\r\nPUB plain.test 5\r\nhello\r\nPING\r\n"
	_, err = conn.Write([]byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil && !isReset(err) {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	if strings.Contains(string(rest), "PONG") {
		t.Errorf("server answered a plaintext client: %q", rest)
	}
	select {
	case m := <-got:
		t.Errorf("plaintext message forwarded: %q", m.Data)
	case <-time.After(300 * time.Millisecond):
	}
}

// isReset reports a connection reset by the server, as opposed to a
// timeout, which would mean the server kept the connection open.
func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

func TestNATSClientRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		server  string // the service identity the server presents
		client  func(env *testEnv) security.Source
		wantErr error
	}{
		{
			name:   "client identity from another CA",
			server: "nats",
			client: func(*testEnv) security.Source {
				return identity(t, newCA(t, testTrustDomain), "shop")
			},
			wantErr: security.ErrUntrusted,
		},
		{
			name:   "server is not the nats service",
			server: "rogue",
			client: func(env *testEnv) security.Source {
				return identity(t, env.ca, "shop")
			},
			wantErr: security.ErrWrongIdentity,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newEnvAs(t, tt.server)
			b := env.newClient(t, tt.client(env))
			err := b.Connect(testContext(t, 10*time.Second))
			if err == nil {
				t.Fatal("connected")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "broker: connect") {
				t.Errorf("error %q lacks its prefix", err)
			}
		})
	}
}
