package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatrpc/moat/bench"
	"github.com/moatrpc/moat/internal/devenv"
	"github.com/moatrpc/moat/security"
)

func newBenchCmd() *cobra.Command {
	var (
		quick       bool
		duration    time.Duration
		warmup      time.Duration
		repeats     int
		concurrency []int
		out         string
		budgetsFile string
		noBudgets   bool
		consul      string
		only        []string
		stacks      []string
		keys        []string
		cpuProfile  string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure moat's handshake and call hot path against grpc-go baselines, and check budgets",
		Long: `bench runs, in this process and over loopback, the same workloads on several
stacks side by side: plaintext grpc-go and grpc-go with credentials.NewTLS as
baselines, moat, moat sealing SECRET fields, and moat sealing them and
logging every call redacted. Each measurement is repeated in rounds; in a
round the stacks compared run back to back, in a rotating order. Figures
are medians over the rounds with their spread.

Measured: unary calls of 1 KiB each way at several levels of concurrency
(calls/s, p50/p90/p99 latency, allocations, bytes and CPU per call), server
streaming of 64 KiB messages (MB/s), full and resumed mutual TLS 1.3
handshakes for ECDSA P-256, Ed25519 and RSA-2048 leaves with X25519 and the
hybrid X25519MLKEM768 (moat against bare crypto/tls), the cost of the field
interceptors, and the cold start from rpc.NewService to the first call
through an in-memory registry and a real Consul agent (when a consul binary
is found: 'make consul').

A table goes to stdout, progress to stderr, and report.json and report.html
(charts, open it in a browser) to --out. The budgets (bench/budgets.yaml)
are checked: bench exits non-zero naming each budget missed. --quick is a
smoke run of a few seconds whose budgets are shown but not enforced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := bench.Config{}
			if quick {
				cfg = bench.QuickConfig()
			}
			flags := cmd.Flags()
			if flags.Changed("duration") || !quick {
				cfg.Duration = duration
			}
			if flags.Changed("warmup") {
				cfg.Warmup = warmup
			}
			if flags.Changed("repeats") || !quick {
				cfg.Repeats = repeats
			}
			if flags.Changed("concurrency") {
				cfg.Concurrency = concurrency
			}
			if flags.Changed("consul") || !quick {
				cfg.Consul = bench.ConsulMode(consul)
			}
			if len(only) > 0 {
				cfg.Kinds = nil
				for _, k := range only {
					cfg.Kinds = append(cfg.Kinds, bench.Kind(k))
				}
			}
			if len(keys) > 0 {
				cfg.KeyTypes = nil
				for _, k := range keys {
					cfg.KeyTypes = append(cfg.KeyTypes, security.KeyType(k))
				}
			}
			if len(stacks) > 0 {
				for _, s := range bench.DefaultStacks() {
					if slices.Contains(stacks, s.Name()) {
						cfg.Stacks = append(cfg.Stacks, s)
					}
				}
				if len(cfg.Stacks) != len(stacks) {
					return fmt.Errorf("bench: --stacks %v: known stacks are %s, %s, %s, %s and %s",
						stacks, bench.StackPlaintext, bench.StackTLS, bench.StackMoat,
						bench.StackMoatSealed, bench.StackMoatFields)
				}
			}
			if !noBudgets {
				b, err := loadBudgets(budgetsFile)
				if err != nil {
					return err
				}
				cfg.Budgets = b
			}
			if out == "" {
				out = defaultBenchOut()
			}
			stderr := cmd.ErrOrStderr()
			cfg.Progress = func(p bench.Progress) { printProgress(stderr, p) }
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("bench: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("bench: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			return runBench(cmd, cfg, out)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false,
		"smoke run: tiny durations, two rounds, no Consul; budgets not enforced")
	f.DurationVar(&duration, "duration", 500*time.Millisecond, "duration of each measurement")
	f.DurationVar(&warmup, "warmup", 0,
		"warm-up before each measurement (default a tenth of --duration)")
	f.IntVar(&repeats, "repeats", 8, "rounds: each measures every case once, side by side")
	f.IntSliceVar(&concurrency, "concurrency", []int{1, 16, 64}, "unary calls kept in flight")
	f.StringVar(&out, "out", "",
		"folder for report.json and report.html (default bench/out in the checkout)")
	f.StringVar(&budgetsFile, "budgets", "",
		"budgets file (default bench/budgets.yaml, else the built-in copy)")
	f.BoolVar(&noBudgets, "no-budgets", false, "do not check budgets")
	f.StringVar(&consul, "consul", string(bench.ConsulAuto),
		"cold start through Consul: auto (when a consul binary is found), on, off")
	f.StringSliceVar(&only, "only", nil,
		"kinds to run: unary, stream, handshake, interceptor, coldstart")
	f.StringSliceVar(&stacks, "stacks", nil,
		"stacks to compare: plaintext, grpc-tls, moat, moat-sealed, moat-fields (default all)")
	f.StringSliceVar(&keys, "keys", nil, "handshake leaf key types: ecdsa-p256, ed25519, rsa-2048")
	f.StringVar(&cpuProfile, "cpuprofile", "",
		"write a CPU profile of the whole run to this file (go tool pprof -top bin/moat FILE)")
	return cmd
}

func runBench(cmd *cobra.Command, cfg bench.Config, out string) error {
	rep, runErr := bench.Run(cmd.Context(), cfg)
	if rep == nil {
		return runErr
	}
	if err := rep.WriteTable(cmd.OutOrStdout()); err != nil {
		return err
	}
	jsonPath, htmlPath, err := rep.WriteFiles(out)
	if err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "\nreport: %s\n        %s\n", htmlPath, jsonPath)
	if runErr != nil {
		return runErr
	}
	missed := rep.Missed()
	if len(missed) == 0 {
		return nil
	}
	names := make([]string, len(missed))
	for i, m := range missed {
		names[i] = m.Line()
	}
	if cfg.Quick {
		fmt.Fprintf(cmd.ErrOrStderr(), "quick run: %d budgets missed, not enforced\n", len(missed))
		return nil
	}
	return fmt.Errorf("bench: %d budgets missed:\n  %s", len(missed), strings.Join(names, "\n  "))
}

// loadBudgets reads path, else bench/budgets.yaml of the checkout, else
// the copy built into the program.
func loadBudgets(path string) (*bench.Budgets, error) {
	if path != "" {
		return bench.LoadBudgets(path)
	}
	if root, err := devenv.RepoRoot(); err == nil {
		p := filepath.Join(root, "bench", "budgets.yaml")
		if _, err := os.Stat(p); err == nil {
			return bench.LoadBudgets(p)
		}
	}
	return bench.DefaultBudgets()
}

func defaultBenchOut() string {
	if root, err := devenv.RepoRoot(); err == nil {
		return filepath.Join(root, "bench", "out")
	}
	return "moat-bench"
}

func printProgress(w io.Writer, p bench.Progress) {
	status := p.Summary
	if p.Err != nil {
		status = "FAILED: " + p.Err.Error()
	}
	fmt.Fprintf(w, "[%3d/%d, %s left] %s %s %s, round %d/%d: %s\n", p.Done, p.Total,
		p.Remaining.Round(time.Second), p.Kind, p.Case, p.Params, p.Round, p.Rounds, status)
}
