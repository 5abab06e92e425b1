package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moatrpc/moat/bench"
	"github.com/moatrpc/moat/security"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// smokeConfig is a run of a couple of seconds, even with the race
// detector: it checks that the runner works, not how fast anything is.
func smokeConfig() bench.Config {
	cfg := bench.QuickConfig()
	cfg.Duration = 20 * time.Millisecond
	cfg.Warmup = 5 * time.Millisecond
	cfg.Concurrency = []int{1, 4}
	return cfg
}

func TestQuickRunProducesReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := smokeConfig()
	budgets, err := bench.DefaultBudgets()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Budgets = budgets
	var progress int
	cfg.Progress = func(bench.Progress) { progress++ }

	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	if progress == 0 {
		t.Error("no progress reported")
	}
	for _, s := range rep.Stacks {
		if !s.Available {
			t.Errorf("stack %s not available: %s", s.Name, s.Note)
		}
	}
	want := map[bench.Kind]int{}
	for _, r := range rep.Results {
		want[r.Kind]++
		if r.Error != "" {
			t.Errorf("%s %s %v failed: %s", r.Kind, r.Case, r.Params, r.Error)
		}
		for name, s := range r.Metrics {
			if len(s.Values) != cfg.Repeats {
				t.Errorf("%s %s %v: %s has %d values, want one per round (%d)",
					r.Kind, r.Case, r.Params, name, len(s.Values), cfg.Repeats)
			}
		}
	}
	for _, k := range bench.AllKinds() {
		if want[k] == 0 {
			t.Errorf("no %s results", k)
		}
	}
	// 5 stacks × 2 workloads × 2 levels of concurrency, but moat without
	// a keyset refuses to serve the profile API's SECRET field.
	if want[bench.KindUnary] != 18 {
		t.Errorf("%d unary results, want 18", want[bench.KindUnary])
	}
	profile := map[string]string{"workload": "profile"}
	if _, ok := rep.Find(bench.KindUnary, bench.StackMoat, profile); ok {
		t.Error("moat without a keyset served SECRET fields")
	}
	for _, stack := range []string{bench.StackMoat, bench.StackMoatSealed, bench.StackMoatFields} {
		r, ok := rep.Find(bench.KindUnary, stack, map[string]string{"workload": "echo"})
		if !ok || r.Metrics["calls_per_s"].Median <= 0 || len(r.Latency) == 0 {
			t.Errorf("%s unary result incomplete: %+v", stack, r)
		}
	}
	if len(rep.Budgets) == 0 {
		t.Error("budgets were not checked")
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"calls/s", "p99 ms", "handshakes/s", "MB/s", "cost ns", "total ms",
		"Budgets", bench.StackPlaintext, bench.StackTLS, bench.StackMoat, bench.StackMoatSealed,
		bench.StackMoatFields} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}

	dir := t.TempDir()
	jsonPath, htmlPath, err := rep.WriteFiles(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if len(back.Results) != len(rep.Results) || len(back.Budgets) != len(rep.Budgets) {
		t.Errorf("report.json holds %d results and %d budgets, want %d and %d",
			len(back.Results), len(back.Budgets), len(rep.Results), len(rep.Budgets))
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"<svg", "Throughput against calls in flight", "Latency distribution",
		"CPU per mutual TLS 1.3 handshake", "Server streaming", "<polyline", "<rect", "</html>"} {
		if !bytes.Contains(page, []byte(s)) {
			t.Errorf("report.html lacks %q", s)
		}
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  bench.Config
	}{
		{"negative duration", bench.Config{Duration: -time.Second}},
		{"zero concurrency", bench.Config{Concurrency: []int{0}}},
		{"unknown kind", bench.Config{Kinds: []bench.Kind{"latency"}}},
		{"unknown consul mode", bench.Config{Consul: "maybe"}},
		{"unknown key type", bench.Config{KeyTypes: []security.KeyType{"dsa-1024"}}},
		{"two stacks of one name", bench.Config{
			Stacks: []bench.Stack{bench.PlaintextStack(), bench.PlaintextStack()}}},
	}
	for _, tt := range tests {
		if _, err := bench.Run(context.Background(), tt.cfg); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}
