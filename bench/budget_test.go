package bench_test

import (
	"strings"
	"testing"

	"github.com/moatrpc/moat/bench"
)

func TestDefaultBudgetsParse(t *testing.T) {
	t.Parallel()
	b, err := bench.DefaultBudgets()
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Budgets) < 4 {
		t.Errorf("%d default budgets, want at least 4", len(b.Budgets))
	}
	if _, err := bench.LoadBudgets("budgets.yaml"); err != nil {
		t.Errorf("budgets.yaml: %v", err)
	}
}

func TestParseBudgetsRefusesMistakes(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml string }{
		{"misspelt limit",
			"budgets:\n- {name: a, kind: unary, case: moat, metric: calls_per_s, minimum: 1}\n"},
		{"no limit", "budgets:\n- {name: a, kind: unary, case: moat, metric: calls_per_s}\n"},
		{"unknown kind", "budgets:\n- {name: a, kind: latency, case: moat, metric: p99_ms, max: 1}\n"},
		{"no name", "budgets:\n- {kind: unary, case: moat, metric: p99_ms, max: 1}\n"},
		{"min above max",
			"budgets:\n- {name: a, kind: unary, case: moat, metric: p99_ms, min: 2, max: 1}\n"},
	}
	for _, tt := range tests {
		if _, err := bench.ParseBudgets(strings.NewReader(tt.yaml)); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

// report builds a report of two stacks measured over three rounds.
func report() *bench.Report {
	stat := func(v ...float64) bench.Stat { return bench.Stat{Values: v, Median: v[len(v)/2]} }
	params := map[string]string{"workload": "profile", "concurrency": "16"}
	return &bench.Report{
		Settings: bench.Settings{PrimaryWorkload: "profile"},
		Results: []bench.Result{
			{Kind: bench.KindUnary, Case: "plaintext", Params: params,
				Metrics: map[string]bench.Stat{"calls_per_s": stat(1000, 1100, 900), "p99_ms": stat(1, 1, 1)}},
			{Kind: bench.KindUnary, Case: "moat", Params: params,
				Metrics: map[string]bench.Stat{"calls_per_s": stat(950, 990, 720), "p99_ms": stat(2, 3, 4)}},
		},
	}
}

func TestBudgetsCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		yaml   string
		status bench.BudgetStatus
		value  float64
	}{
		// Ratios round by round: 0.95, 0.9, 0.8; the median is 0.9.
		{"ratio met", "{name: r, kind: unary, case: moat, baseline: plaintext, " +
			"metric: calls_per_s, min: 0.9}", bench.BudgetMet, 0.9},
		{"ratio missed", "{name: r, kind: unary, case: moat, baseline: plaintext, " +
			"metric: calls_per_s, min: 0.91}", bench.BudgetMissed, 0.9},
		{"absolute missed", "{name: a, kind: unary, case: moat, metric: p99_ms, max: 2.5}",
			bench.BudgetMissed, 3},
		{"absolute met at another level", "{name: a, kind: unary, case: moat, metric: p99_ms, max: 5, " +
			"match: {concurrency: '16'}}", bench.BudgetMet, 3},
		{"stack not run", "{name: a, kind: unary, case: moat-fields, baseline: plaintext, " +
			"metric: calls_per_s, min: 1}", bench.BudgetSkipped, 0},
		{"other workload", "{name: a, kind: unary, case: moat, metric: p99_ms, max: 1, " +
			"match: {workload: echo}}", bench.BudgetSkipped, 0},
	}
	for _, tt := range tests {
		b, err := bench.ParseBudgets(strings.NewReader("budgets:\n- " + tt.yaml + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		lines := b.Check(report())
		if len(lines) != 1 {
			t.Fatalf("%s: %d lines, want 1", tt.name, len(lines))
		}
		l := lines[0]
		if l.Status != tt.status || (tt.status != bench.BudgetSkipped && l.Value != tt.value) {
			t.Errorf("%s: %s %v, want %s %v (%s)", tt.name, l.Status, l.Value, tt.status, tt.value, l.Line())
		}
	}
}
