package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

// ErrUnavailable marks a stack or a measurement that cannot run here, such
// as the cold start through Consul without a consul binary. The runner
// skips it with a note instead of failing.
var ErrUnavailable = errors.New("bench: not available")

// Names of the built-in stacks, as they appear in reports and budgets.
const (
	StackPlaintext  = "plaintext"
	StackTLS        = "grpc-tls"
	StackMoat       = "moat"
	StackMoatSealed = "moat-sealed"
	StackMoatFields = "moat-fields"
)

// Service names of the identities the stacks use.
const (
	serverService = "bench-server"
	clientService = "bench-client"
)

// Stack is one way to serve and call gRPC, client and server in this
// process over loopback: a baseline or a moat configuration. The built-in
// stacks are [PlaintextStack], [TLSStack], [MoatStack] and [FieldsStack].
type Stack struct {
	name        string
	description string
	unavailable error
	start       startFunc
}

// startFunc serves what register registers and returns a connection to it.
type startFunc func(ctx context.Context, m *material, register registerFunc) (*endpoint, error)

// registerFunc registers services on a server.
type registerFunc = func(grpc.ServiceRegistrar)

// Name returns the stack's name in reports and budgets.
func (s Stack) Name() string { return s.name }

// Description says what the stack is made of.
func (s Stack) Description() string { return s.description }

// endpoint is a started stack: a client connection to its server.
type endpoint struct {
	conn  grpc.ClientConnInterface
	close func() error
}

// DefaultStacks returns the stacks a run compares: the two grpc-go
// baselines, moat, moat sealing SECRET fields, and moat sealing them and
// logging every call.
func DefaultStacks() []Stack {
	return []Stack{PlaintextStack(), TLSStack(), MoatStack(StackMoat, "", nil, nil),
		SealedStack(), FieldsStack()}
}

// PlaintextStack is grpc-go without encryption: the fastest a call can be
// and the baseline the others are compared to. It exists in this package
// only, as a measuring stick; moat itself has no plaintext mode.
func PlaintextStack() Stack {
	return Stack{
		name:        StackPlaintext,
		description: "grpc-go, insecure credentials, no encryption (baseline)",
		start: func(_ context.Context, _ *material, reg registerFunc) (*endpoint, error) {
			return grpcStack(reg, insecure.NewCredentials(), insecure.NewCredentials())
		},
	}
}

// TLSStack is grpc-go with credentials.NewTLS and the same certificates as
// the moat stacks: mutual TLS 1.3, the server's certificate checked
// against its hostname (localhost), no SPIFFE identity checks.
func TLSStack() Stack {
	return Stack{
		name:        StackTLS,
		description: "grpc-go, credentials.NewTLS, mutual TLS 1.3, hostname verification (baseline)",
		start: func(_ context.Context, m *material, reg registerFunc) (*endpoint, error) {
			server := &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*m.server.TLSCertificate()},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    m.server.Bundle(),
			}
			client := &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*m.client.TLSCertificate()},
				RootCAs:      m.client.Bundle(),
				ServerName:   "localhost",
			}
			return grpcStack(reg, credentials.NewTLS(server), credentials.NewTLS(client))
		},
	}
}

// grpcStack serves on a loopback port with plain grpc-go and dials it.
func grpcStack(
	register registerFunc,
	serverCreds, clientCreds credentials.TransportCredentials,
) (*endpoint, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: listen: %w", err)
	}
	srv := grpc.NewServer(grpc.Creds(serverCreds))
	register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(clientCreds))
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("bench: dial: %w", err)
	}
	return &endpoint{conn: cc, close: func() error {
		err := cc.Close()
		srv.Stop()
		<-served
		return err
	}}, nil
}

// MoatStack is moat as services use it: a server built by rpc.NewService
// and a second service calling it through its client (svc.Client().Conn),
// both in an in-memory registry, with mutual TLS 1.3 and SPIFFE identity
// checks. server and client are extra options of the two services, for
// example interceptors; an empty description describes the options as
// "none".
func MoatStack(name, description string, server, client []rpc.Option) Stack {
	if description == "" {
		description = "moat: rpc.NewService server, svc.Client().Conn client, mutual TLS 1.3, " +
			"SPIFFE identity checks, in-memory registry"
	}
	return Stack{
		name:        name,
		description: description,
		start: func(ctx context.Context, m *material, reg registerFunc) (*endpoint, error) {
			return moatStack(ctx, m, reg, server, client)
		},
	}
}

func moatStack(
	ctx context.Context,
	m *material,
	register registerFunc,
	serverOpts, clientOpts []rpc.Option,
) (*endpoint, error) {
	reg := registry.NewMemory()
	common := []rpc.Option{rpc.WithRegistry(reg), rpc.WithoutSignalHandling(),
		rpc.WithGracePeriod(2 * time.Second)}
	srv, err := rpc.NewService(serverService, append(append([]rpc.Option{
		rpc.WithIdentity(m.server)}, common...), serverOpts...)...)
	if err != nil {
		return nil, err
	}
	register(srv.Server())
	if err := srv.Start(ctx); err != nil {
		_ = srv.Stop(ctx)
		if errors.Is(err, rpc.ErrNoKeyset) {
			// moat refuses to serve SECRET fields it could not seal: the
			// workload does not run on this stack.
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	cli, err := rpc.NewService(clientService, append(append([]rpc.Option{
		rpc.WithIdentity(m.client)}, common...), clientOpts...)...)
	if err != nil {
		_ = srv.Stop(ctx)
		return nil, err
	}
	conn, err := cli.Client().Conn(serverService)
	if err != nil {
		_ = cli.Stop(ctx)
		_ = srv.Stop(ctx)
		return nil, err
	}
	return &endpoint{conn: conn, close: func() error {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return errors.Join(cli.Stop(stopCtx), srv.Stop(stopCtx))
	}}, nil
}

// SealedStack is [MoatStack] with field encryption on both services
// (rpc.WithKeyring): SECRET fields of requests are sealed with an
// AES-256-GCM keyset by the client and unsealed by the server, and the
// other way for replies. It sits between [MoatStack] and [FieldsStack], to
// tell the cost of sealing from that of the call log.
func SealedStack() Stack {
	const description = "moat + rpc.WithKeyring: SECRET fields sealed (AES-256-GCM keyset) " +
		"on both services"
	return fieldsStack(StackMoatSealed, description, false)
}

// FieldsStack is [SealedStack] with the call log on both services
// (rpc.WithCallLog): a line per call with sensitive fields redacted,
// formatted as JSON and written to io.Discard, so that the formatting is
// paid but no I/O.
func FieldsStack() Stack {
	const description = "moat + rpc.WithKeyring (sealing) + rpc.WithCallLog (redacting call " +
		"log, JSON to io.Discard) on both services"
	return fieldsStack(StackMoatFields, description, true)
}

func fieldsStack(name, description string, callLog bool) Stack {
	stack := Stack{name: name, description: description}
	opts, err := fieldsOptions(callLog)
	if err != nil {
		stack.unavailable = fmt.Errorf("%w: security/fields: %v", ErrUnavailable, err)
		return stack
	}
	stack.start = MoatStack(name, description, opts, opts).start
	return stack
}

// fieldsOptions are the options of both services of [SealedStack] and
// [FieldsStack]: one keyring, as two services holding the same keyset
// file, and the call log when asked.
func fieldsOptions(callLog bool) ([]rpc.Option, error) {
	ring, err := newKeyring()
	if err != nil {
		return nil, err
	}
	opts := []rpc.Option{rpc.WithKeyring(ring, fields.WithRequireSealed())}
	if callLog {
		opts = append(opts, rpc.WithCallLog(),
			rpc.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))))
	}
	return opts, nil
}

func newKeyring() (*fields.Keyring, error) {
	ks, err := fields.NewKeyset()
	if err != nil {
		return nil, err
	}
	return fields.NewKeyring(map[string]*fields.Keyset{fields.DefaultKeyset: ks})
}

// newSealer returns a sealer as rpc.WithKeyring builds one.
func newSealer() (*fields.Sealer, error) {
	ring, err := newKeyring()
	if err != nil {
		return nil, err
	}
	return fields.NewSealer(ring, fields.WithRequireSealed())
}

// newCallLogger returns a call logger as rpc.WithCallLog builds one for
// [FieldsStack]: a JSON line per call, formatted and written to io.Discard.
func newCallLogger() *fields.CallLogger {
	return fields.NewCallLogger(slog.New(slog.NewJSONHandler(io.Discard, nil)))
}

// material is what every stack shares: one development CA and the ECDSA
// P-256 identities of the server and the client.
type material struct {
	ca     *security.CA
	server *security.Identity
	client *security.Identity
}

func newMaterial() (*material, error) {
	ca, err := security.NewCA("bench.moat.local")
	if err != nil {
		return nil, err
	}
	server, err := ca.Identity(serverService)
	if err != nil {
		return nil, err
	}
	client, err := ca.Identity(clientService)
	if err != nil {
		return nil, err
	}
	return &material{ca: ca, server: server, client: client}, nil
}
