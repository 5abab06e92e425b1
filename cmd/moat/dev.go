package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatrpc/moat/internal/devenv"
)

func newDevCmd() *cobra.Command {
	var (
		dir      string
		td       string
		services []string
		lifetime time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the development environment: dev CA, certificates and a Consul agent over mutual TLS",
		Long: `dev creates (or reuses) a development CA in <dir>/certs, issues a workload
certificate for each service, creates a development keyset in <dir>/keys,
starts a Consul agent bound to 127.0.0.1 that accepts only TLS with a client
certificate from that CA, starts an embedded NATS server that does the same,
writes the variables services need to <dir>/env and prints them. It renews
the certificates while it runs, and stops everything when interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			unlock, err := lockDir(dir)
			if err != nil {
				return err
			}
			defer unlock()
			slog.Info("starting Consul", "dir", dir)
			env, err := devenv.Start(ctx, devenv.EnvConfig{Dir: dir, TrustDomain: td, Services: services,
				CertLifetime: lifetime})
			if err != nil {
				return err
			}
			defer env.Stop()
			path, err := env.WriteEnvFile()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "moat dev environment is up (trust domain %s)\n", env.CA.TrustDomain().Name())
			fmt.Fprintf(out, "  Consul  https://%s (client certificate required)\n", env.Consul.Addr())
			fmt.Fprintf(out, "  NATS    %s (client certificate required, server pinned as svc/nats)\n",
				env.NATS.ClientURL())
			fmt.Fprintf(out, "  keysets %s\n\n", env.KeysDir)
			for _, kv := range env.Environ() {
				fmt.Fprintf(out, "export %s\n", kv)
			}
			fmt.Fprintf(out, "\nThe same lines are in %s: 'source %s' in another shell, then run services.\n",
				path, path)
			fmt.Fprintf(out, "Certificates issued for: %s\n", strings.Join(services, ", "))
			fmt.Fprintf(out, "Certificates last %v and are renewed at two thirds of that; services "+
				"started with rpc.WithEnv reload them without a restart.\n", lifetime)
			fmt.Fprintln(out, "Press Ctrl-C to stop.")
			renewCtx, stopRenew := context.WithCancel(ctx)
			defer stopRenew()
			go env.Renew(renewCtx, func(svc string, notAfter time.Time, err error) {
				if err != nil {
					slog.Error("certificate renewal failed", "service", svc, "err", err)
					return
				}
				slog.Info("certificate renewed", "service", svc, "not_after", notAfter)
			})
			select {
			case <-ctx.Done():
			case <-env.Consul.Done():
				return fmt.Errorf("consul exited unexpectedly; see %s",
					filepath.Join(dir, "consul", "consul.log"))
			}
			slog.Info("stopping Consul")
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".dev", "folder for certificates, Consul configuration and logs")
	cmd.Flags().StringVar(&td, "trust-domain", devenv.DefaultTrustDomain, "trust domain of a new dev CA")
	cmd.Flags().StringSliceVar(&services, "services", []string{"auth", "profile", "audit", "caller"},
		"services to issue workload certificates for")
	cmd.Flags().DurationVar(&lifetime, "cert-lifetime", time.Hour, "lifetime of workload certificates")
	return cmd
}

// lockDir takes an exclusive lock on dir, so that two dev environments do
// not share one folder.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "dev.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another 'moat dev' is running with --dir %s; stop it or use another folder", dir)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
