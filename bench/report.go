package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run: every measurement with its spread over
// the rounds, the budgets checked, and notes on what was skipped. It is
// written as a table ([Report.WriteTable]), JSON ([Report.WriteJSON]) and
// an HTML page with charts ([Report.WriteHTML]).
type Report struct {
	Started        time.Time    `json:"started"`
	ElapsedSeconds float64      `json:"elapsed_seconds"`
	Host           Host         `json:"host"`
	Settings       Settings     `json:"settings"`
	Stacks         []StackInfo  `json:"stacks,omitempty"`
	Results        []Result     `json:"results"`
	Budgets        []BudgetLine `json:"budgets,omitempty"`
	Notes          []string     `json:"notes,omitempty"`
}

// Host describes the machine of the run.
type Host struct {
	GoVersion   string `json:"go_version"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	CPUs        int    `json:"cpus"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	CPUMeasured bool   `json:"cpu_measured"`
}

// Settings records the configuration of the run.
type Settings struct {
	Duration        string   `json:"duration"`
	Warmup          string   `json:"warmup"`
	Repeats         int      `json:"repeats"`
	Concurrency     []int    `json:"concurrency"`
	Workloads       []string `json:"workloads"`
	PrimaryWorkload string   `json:"primary_workload"`
	PayloadBytes    int      `json:"payload_bytes"`
	ChunkBytes      int      `json:"chunk_bytes"`
	Quick           bool     `json:"quick"`
}

// StackInfo describes a stack of the run.
type StackInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Available   bool   `json:"available"`
	Note        string `json:"note,omitempty"`
}

// Result is one case of one kind: its metrics over the rounds and, for
// unary calls, the latency distribution of all rounds together.
type Result struct {
	Kind    Kind              `json:"kind"`
	Case    string            `json:"case"`
	Params  map[string]string `json:"params,omitempty"`
	Metrics map[string]Stat   `json:"metrics,omitempty"`
	Latency []Quantile        `json:"latency,omitempty"`
	Error   string            `json:"error,omitempty"`
	Note    string            `json:"note,omitempty"`
}

// Metric returns the named metric of r.
func (r Result) Metric(name string) (Stat, bool) {
	s, ok := r.Metrics[name]
	return s, ok
}

func newReport(cfg Config) *Report {
	names := make([]string, len(cfg.Workloads))
	for i, w := range cfg.Workloads {
		names[i] = w.Name()
	}
	return &Report{
		Started: time.Now(),
		Host: Host{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPUMeasured: cpuMeasured()},
		Settings: Settings{
			Duration: cfg.Duration.String(), Warmup: cfg.Warmup.String(), Repeats: cfg.Repeats,
			Concurrency: slices.Clone(cfg.Concurrency), Workloads: names, PrimaryWorkload: names[0],
			PayloadBytes: PayloadSize, ChunkBytes: ChunkSize, Quick: cfg.Quick,
		},
		Results: []Result{},
	}
}

func (c *caseRun) result() Result {
	r := Result{Kind: c.kind, Case: c.name, Params: c.params, Note: c.note,
		Metrics: map[string]Stat{}}
	for _, name := range c.order {
		r.Metrics[name] = newStat(c.units[name], c.values[name])
	}
	if len(c.latencies) > 0 {
		slices.Sort(c.latencies)
		r.Latency = distribution(c.latencies)
	}
	if c.err != nil {
		r.Error = c.err.Error()
	}
	return r
}

// Find returns the result of kind and case whose parameters include
// params.
func (rep *Report) Find(kind Kind, name string, params map[string]string) (Result, bool) {
	for _, r := range rep.Results {
		if r.Kind == kind && r.Case == name && matches(r.Params, params) {
			return r, true
		}
	}
	return Result{}, false
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// Missed returns the budgets the run did not meet.
func (rep *Report) Missed() []BudgetLine {
	var out []BudgetLine
	for _, b := range rep.Budgets {
		if b.Status == BudgetMissed {
			out = append(out, b)
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteFiles writes report.json and report.html into dir, creating it, and
// returns their paths.
func (rep *Report) WriteFiles(dir string) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("bench: %w", err)
	}
	jsonPath = filepath.Join(dir, "report.json")
	htmlPath = filepath.Join(dir, "report.html")
	for _, f := range []struct {
		path  string
		write func(io.Writer) error
	}{{jsonPath, rep.WriteJSON}, {htmlPath, rep.WriteHTML}} {
		out, err := os.Create(f.path)
		if err != nil {
			return "", "", fmt.Errorf("bench: %w", err)
		}
		werr := f.write(out)
		if cerr := out.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return "", "", fmt.Errorf("bench: write %s: %w", f.path, werr)
		}
	}
	return jsonPath, htmlPath, nil
}

// column is one column of a table section: a metric and how to print it.
type column struct {
	title  string
	metric string
	digits int
}

// sections are the tables of each kind, in the order of the run.
var sections = []struct {
	kind   Kind
	title  string
	params []string
	cols   []column
}{
	{KindUnary, "Unary calls, 1 KiB each way", []string{"workload", "concurrency"}, []column{
		{"calls/s", "calls_per_s", 0}, {"p50 ms", "p50_ms", 3}, {"p90 ms", "p90_ms", 3},
		{"p99 ms", "p99_ms", 3}, {"allocs/call", "allocs_per_call", 0},
		{"B/call", "bytes_per_call", 0}, {"CPU µs/call", "cpu_us_per_call", 1},
	}},
	{KindStream, "Server streaming, 64 KiB messages", nil, []column{
		{"MB/s", "mb_per_s", 0}, {"CPU µs/MB", "cpu_us_per_mb", 0}, {"allocs/MB", "allocs_per_mb", 0},
	}},
	{KindHandshake, "Mutual TLS 1.3 handshakes", []string{"key", "kx", "mode"}, []column{
		{"handshakes/s", "handshakes_per_s", 0}, {"CPU µs/hs", "cpu_us_per_handshake", 0},
		{"allocs/hs", "allocs_per_handshake", 0}, {"B/hs", "bytes_per_handshake", 0},
	}},
	{KindInterceptor, "Interceptors around a handler that does nothing",
		[]string{"side", "message"}, []column{
			{"ns/call", "ns_per_call", 0}, {"cost ns", "cost_ns", 0}, {"allocs/call", "allocs_per_call", 1},
		}},
	{KindColdStart, "Cold start: rpc.NewService to first successful call",
		[]string{"registry"}, []column{
			{"total ms", "total_ms", 1}, {"NewService ms", "new_ms", 2}, {"Start ms", "start_ms", 1},
			{"first call ms", "first_call_ms", 1},
		}},
}

// WriteTable writes the results as plain text tables, each figure the
// median of the rounds followed by ± half its range, in percent of the
// median, then the budgets and the notes.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "moat bench: %s %s/%s, %d CPUs, GOMAXPROCS %d; %d rounds of %s each; "+
		"median ±half range\n", rep.Host.GoVersion, rep.Host.OS, rep.Host.Arch, rep.Host.CPUs,
		rep.Host.GOMAXPROCS, rep.Settings.Repeats, rep.Settings.Duration)
	for _, sec := range sections {
		rows := rep.resultsOf(sec.kind)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(tw, "\n%s\n", sec.title)
		head := []string{"case"}
		head = append(head, sec.params...)
		for _, c := range sec.cols {
			head = append(head, c.title)
		}
		fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
		for _, r := range rows {
			cells := []string{r.Case}
			for _, p := range sec.params {
				cells = append(cells, r.Params[p])
			}
			for _, c := range sec.cols {
				cells = append(cells, formatStat(r, c))
			}
			if r.Error != "" {
				cells = append(cells, "FAILED: "+r.Error)
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Budgets) > 0 {
		fmt.Fprintf(w, "\nBudgets\n")
		for _, b := range rep.Budgets {
			fmt.Fprintf(w, "  %-6s %s\n", strings.ToUpper(string(b.Status)), b.Line())
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

func formatStat(r Result, c column) string {
	s, ok := r.Metrics[c.metric]
	if !ok || len(s.Values) == 0 {
		return "-"
	}
	num := formatNumber(s.Median, c.digits)
	if len(s.Values) < 2 {
		return num
	}
	return fmt.Sprintf("%s ±%s", num, formatSpread(s))
}

// formatSpread prints the half range relative to the median, or in the
// metric's unit when the median is near zero (interceptor costs).
func formatSpread(s Stat) string {
	if math.Abs(s.Median) < 1 {
		return formatNumber((s.Max-s.Min)/2, 2)
	}
	return fmt.Sprintf("%.0f%%", 100*s.Spread())
}

func formatNumber(v float64, digits int) string {
	if digits == 0 && math.Abs(v) >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	if digits == 0 {
		digits = 2
	}
	return fmt.Sprintf("%.*f", digits, v)
}

// resultsOf returns the results of one kind, in report order.
func (rep *Report) resultsOf(kind Kind) []Result {
	var rows []Result
	for _, r := range rep.Results {
		if r.Kind == kind {
			rows = append(rows, r)
		}
	}
	return rows
}
