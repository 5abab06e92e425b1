package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/moatrpc/moat/internal/devenv"
	benchv1 "github.com/moatrpc/moat/proto/moat/bench/v1"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
)

// coldStartCases returns the cold start through an in-memory registry
// and, when a consul binary is available, through a real Consul agent it
// starts (over HTTPS with client certificates, as in production) and
// stops in cleanup.
func coldStartCases(ctx context.Context, cfg Config) ([]*caseRun, func(), []string) {
	var notes []string
	cleanup := func() {}
	ca, err := security.NewCA("bench.moat.local")
	if err != nil {
		c := newCase(KindColdStart, "moat", map[string]string{"registry": "memory"}, nil)
		c.err = err
		return []*caseRun{c}, cleanup, nil
	}
	var seq atomic.Int64
	cases := []*caseRun{newCase(KindColdStart, "moat", map[string]string{"registry": "memory"},
		func(ctx context.Context) (sample, error) {
			return coldStart(ctx, ca, &seq, memoryRegistries)
		})}
	if cfg.Consul == ConsulOff {
		return cases, cleanup, []string{"cold start through Consul skipped (--consul off)"}
	}

	consul, err := startConsul(ctx, cfg, ca)
	if err != nil {
		if cfg.Consul == ConsulOn || !errors.Is(err, ErrUnavailable) {
			c := newCase(KindColdStart, "moat", map[string]string{"registry": "consul"}, nil)
			c.err = err
			return append(cases, c), cleanup, notes
		}
		return cases, cleanup, append(notes, fmt.Sprintf("cold start through Consul skipped: %v", err))
	}
	notes = append(notes, consul.note)
	cleanup = consul.stop
	cases = append(cases, newCase(KindColdStart, "moat", map[string]string{"registry": "consul"},
		func(ctx context.Context) (sample, error) {
			return coldStart(ctx, ca, &seq, consul.registries)
		}))
	return cases, cleanup, notes
}

type benchConsul struct {
	agent *devenv.Consul
	dir   string
	note  string
}

func startConsul(ctx context.Context, cfg Config, ca *security.CA) (*benchConsul, error) {
	bin := cfg.ConsulBinary
	if bin == "" {
		var err error
		if bin, err = devenv.FindConsul(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: consul binary: %v", ErrUnavailable, err)
	}
	dir, err := os.MkdirTemp("", "moat-bench-consul-")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	agent, err := devenv.StartConsul(ctx, devenv.ConsulConfig{Binary: bin, Dir: dir, CA: ca})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &benchConsul{agent: agent, dir: dir,
		note: fmt.Sprintf("Consul agent %s started in %.1fs for the cold start", bin,
			time.Since(start).Seconds())}, nil
}

func (c *benchConsul) stop() {
	_ = c.agent.Stop()
	_ = os.RemoveAll(c.dir)
}

// registries returns a registry client for each service, each reaching
// Consul with its own identity as in production (a registry client may
// register only the service its certificate names).
func (c *benchConsul) registries(serverID, clientID *security.Identity) (
	serverReg, clientReg registry.Registry, closeAll func(), err error,
) {
	s, err := registry.NewConsul(registry.WithConsulAddress(c.agent.Addr()),
		registry.WithConsulIdentity(serverID))
	if err != nil {
		return nil, nil, nil, err
	}
	cl, err := registry.NewConsul(registry.WithConsulAddress(c.agent.Addr()),
		registry.WithConsulIdentity(clientID))
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	return s, cl, func() { s.Close(); cl.Close() }, nil
}

// memoryRegistries returns one in-memory registry for both services.
func memoryRegistries(_, _ *security.Identity) (
	serverReg, clientReg registry.Registry, closeAll func(), err error,
) {
	reg := registry.NewMemory()
	return reg, reg, func() {}, nil
}

// registriesFunc makes the registry clients of a cold start.
type registriesFunc func(serverID, clientID *security.Identity) (
	serverReg, clientReg registry.Registry, closeAll func(), err error)

// coldStart times, for a server and a client service new to the
// registries: rpc.NewService of the server, its Start (listen and
// register), then a new client service, its connection by name and the
// first call, which resolves the server in the registry, connects and
// verifies it. Identities are issued before the clock starts.
func coldStart(
	ctx context.Context,
	ca *security.CA,
	seq *atomic.Int64,
	registries registriesFunc,
) (sample, error) {
	n := seq.Add(1)
	serverName, clientName := fmt.Sprintf("cold-server-%d", n), fmt.Sprintf("cold-client-%d", n)
	serverID, err := ca.Identity(serverName)
	if err != nil {
		return sample{}, err
	}
	clientID, err := ca.Identity(clientName)
	if err != nil {
		return sample{}, err
	}
	serverReg, clientReg, closeRegs, err := registries(serverID, clientID)
	if err != nil {
		return sample{}, err
	}
	defer closeRegs()
	common := []rpc.Option{rpc.WithoutSignalHandling(), rpc.WithGracePeriod(2 * time.Second)}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()

	t0 := time.Now()
	srv, err := rpc.NewService(serverName, append(common, rpc.WithIdentity(serverID),
		rpc.WithRegistry(serverReg))...)
	if err != nil {
		return sample{}, err
	}
	benchServer{}.register(srv.Server())
	t1 := time.Now()
	if err := srv.Start(ctx); err != nil {
		return sample{}, err
	}
	defer srv.Stop(stopCtx)
	t2 := time.Now()
	cli, err := rpc.NewService(clientName, append(common, rpc.WithIdentity(clientID),
		rpc.WithRegistry(clientReg))...)
	if err != nil {
		return sample{}, err
	}
	defer cli.Stop(stopCtx)
	conn, err := cli.Client().Conn(serverName)
	if err != nil {
		return sample{}, err
	}
	callCtx, cancelCall := context.WithTimeout(ctx, callTimeout)
	defer cancelCall()
	// Waiting for ready: the first call may be made before the resolver
	// has heard of the server, as in a real start.
	_, err = benchv1.NewBenchServiceClient(conn).Echo(callCtx, &benchv1.EchoRequest{},
		grpc.WaitForReady(true))
	if err != nil {
		return sample{}, fmt.Errorf("first call: %w", err)
	}
	t3 := time.Now()
	return sample{
		values: []value{
			{"total_ms", "ms", ms(t3.Sub(t0))},
			{"new_ms", "ms", ms(t1.Sub(t0))},
			{"start_ms", "ms", ms(t2.Sub(t1))},
			{"first_call_ms", "ms", ms(t3.Sub(t2))},
		},
		summary: fmt.Sprintf("%.1f ms to the first call", ms(t3.Sub(t0))),
	}, nil
}
