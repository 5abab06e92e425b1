// Command moat is moat's command-line tool: development certificates, the
// development environment with a real Consul agent, and the demo.
//
// Results go to stdout; progress and logs go to stderr.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "moat:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:           "moat",
		Short:         "moat: microservices over gRPC where mutual TLS is the only path",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(),
				&slog.HandlerOptions{Level: level})))
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug detail to stderr")
	root.AddCommand(
		newCertsCmd(), newKeysCmd(), newDevCmd(), newDemoCmd(), newDoctorCmd(),
		newCallCmd(), newServicesCmd(), newDescribeCmd(), newBenchCmd(),
	)
	return root
}
