package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatrpc/moat/internal/devenv"
	auditv1 "github.com/moatrpc/moat/proto/moat/example/audit/v1"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/services"
	"github.com/moatrpc/moat/services/scenario"
)

func newDemoCmd() *cobra.Command {
	var (
		dir    string
		binDir string
		rounds int
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the example services through a real Consul agent over mutual TLS and check every call",
		Long: `demo starts a fresh development environment (CA, certificates, Consul),
starts the auth and profile example services as separate processes, plays the
scenario for every synthetic user (login, then profile fetch, which makes
profile check the session with auth), prints a summary, then stops the
services and checks they deregistered. It exits non-zero if any call failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), dir, binDir, rounds)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".dev/demo", "folder for the demo's certificates and Consul; emptied first")
	cmd.Flags().StringVar(&binDir, "bin-dir", "bin", "folder holding the auth and profile binaries")
	cmd.Flags().IntVar(&rounds, "rounds", 5, "times the scenario is played for every user")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, dir, binDir string, rounds int) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	slog.Info("starting dev environment: CA, certificates, keysets, Consul and NATS over mutual TLS",
		"dir", dir)
	env, err := devenv.Start(ctx, devenv.EnvConfig{Dir: dir,
		Services: []string{"auth", "profile", "audit", "caller"}})
	if err != nil {
		return err
	}
	defer env.Stop()
	slog.Info("Consul and NATS are up", "consul", env.Consul.Addr(), "nats", env.NATS.ClientURL())

	callerID, err := security.LoadIdentity(securityFiles(env, "caller"))
	if err != nil {
		return err
	}
	reg, err := registry.NewConsul(registry.WithConsulAddress(env.Consul.Addr()),
		registry.WithConsulIdentity(callerID))
	if err != nil {
		return err
	}
	defer reg.Close()

	procs := map[string]*exec.Cmd{}
	var wg sync.WaitGroup
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
		}
		wg.Wait()
	}()
	for _, name := range demoServices {
		p, err := startService(filepath.Join(binDir, name), name, env, &wg)
		if err != nil {
			return err
		}
		procs[name] = p
	}
	for _, name := range demoServices {
		if err := waitRegistered(ctx, reg, name, 30*time.Second); err != nil {
			return err
		}
		slog.Info("service registered and healthy in Consul", "service", name)
	}

	users, err := services.Users()
	if err != nil {
		return err
	}
	ring, err := fields.LoadKeyring(mustKeysetFiles(env.KeysDir))
	if err != nil {
		return err
	}
	defer ring.Close()
	authConn, err := rpc.Dial(reg, callerID, "auth", rpc.WithDialKeyring(ring))
	if err != nil {
		return err
	}
	defer authConn.Close()
	profileConn, err := rpc.Dial(reg, callerID, "profile", rpc.WithDialKeyring(ring))
	if err != nil {
		return err
	}
	defer profileConn.Close()

	slog.Info("playing the scenario", "users", len(users), "rounds", rounds)
	callCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	res := scenario.Run(callCtx, authConn, profileConn, users, rounds)
	cancel()

	// Every contact update was published; the audit service records each
	// event once (queue group), from the verified publisher.
	summary, auditErr := auditSummary(ctx, reg, callerID, ring, int64(res.Updates))

	slog.Info("stopping services")
	for name, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		delete(procs, name)
	}
	wg.Wait()
	var clean []string
	for _, name := range demoServices {
		if _, err := reg.GetService(ctx, name); errors.Is(err, registry.ErrNotFound) {
			clean = append(clean, name)
		}
	}

	fmt.Fprintf(out, "\nmoat demo summary\n")
	fmt.Fprintf(out, "  users:          %d synthetic, %d rounds\n", len(users), rounds)
	fmt.Fprintf(out, "  calls:          %d from the caller (+%d profile->auth checks)\n",
		res.Calls, res.Calls*2/3)
	fmt.Fprintf(out, "  errors:         %d\n", len(res.Errors))
	fmt.Fprintf(out, "  latency:        p50 %v, p99 %v\n",
		res.Percentile(50).Round(time.Microsecond), res.Percentile(99).Round(time.Microsecond))
	fmt.Fprintf(out, "  transport:      mutual TLS 1.3, identities spiffe://%s/svc/{caller,auth,profile,audit}\n",
		env.CA.TrustDomain().Name())
	if auditErr == nil {
		fmt.Fprintf(out, "  events:         %d profile.updated published, %d recorded by audit from %v\n",
			res.Updates, summary.GetEvents(), summary.GetPublishers())
	} else {
		fmt.Fprintf(out, "  events:         %v\n", auditErr)
	}
	fmt.Fprintf(out, "  deregistered:   %v of %v\n", clean, demoServices)
	for i, err := range res.Errors {
		if i == 5 {
			fmt.Fprintf(out, "  ... %d more errors\n", len(res.Errors)-5)
			break
		}
		fmt.Fprintf(out, "  error: %v\n", err)
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d of %d calls failed", len(res.Errors), res.Calls)
	}
	if auditErr != nil {
		return auditErr
	}
	if len(clean) != len(demoServices) {
		return fmt.Errorf("services still registered after stop: only %v deregistered", clean)
	}
	fmt.Fprintln(out, "  result:         every call succeeded")
	return nil
}

func securityFiles(env *devenv.Env, service string) (string, string, string) {
	f := security.FilesFor(env.CertsDir, service)
	return f.Cert, f.Key, f.Bundle
}

func startService(bin, name string, env *devenv.Env, wg *sync.WaitGroup) (*exec.Cmd, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no %s binary at %s: run 'make build' first", name, bin)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env.Environ()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintf(os.Stderr, "  [%s] %s\n", name, sc.Text())
		}
		_ = cmd.Wait()
	}()
	return cmd, nil
}

func waitRegistered(ctx context.Context, reg registry.Registry, name string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if _, err := reg.GetService(ctx, name); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not register in Consul within %v", name, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func mustKeysetFiles(dir string) map[string]string {
	files, err := fields.KeysetFiles(dir)
	if err != nil {
		return map[string]string{}
	}
	return files
}

// demoServices run as separate processes during the demo.
var demoServices = []string{"auth", "profile", "audit"}

// auditSummary asks the audit service what it recorded, waiting a little
// for the last events to arrive, and checks it recorded want events, all
// from profile.
func auditSummary(ctx context.Context, reg registry.Registry, id *security.Identity,
	ring *fields.Keyring, want int64) (*auditv1.SummaryResponse, error) {
	conn, err := rpc.Dial(reg, id, "audit", rpc.WithDialKeyring(ring))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := auditv1.NewAuditServiceClient(conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		summary, err := client.Summary(callCtx, &auditv1.SummaryRequest{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("audit summary: %w", err)
		}
		if summary.GetEvents() >= want || time.Now().After(deadline) {
			if summary.GetEvents() != want {
				return summary, fmt.Errorf("audit recorded %d events, want %d", summary.GetEvents(), want)
			}
			if len(summary.GetPublishers()) != 1 || !strings.HasSuffix(summary.GetPublishers()[0], "/svc/profile") {
				return summary, fmt.Errorf("audit events came from %v, want profile only", summary.GetPublishers())
			}
			return summary, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}
