package bench

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed budgets.yaml
var defaultBudgets []byte

// Budgets are the limits a run is checked against: ratios to a baseline
// of the same run, which hold on any machine, and absolute limits a user
// sets for their own machine.
type Budgets struct {
	Budgets []Budget `yaml:"budgets"`
}

// Budget is one limit. With a Baseline it is a ratio budget: the metric of
// Case divided by that of Baseline, round by round (both were measured in
// the same round, side by side), with the median of those ratios checked
// against Min and Max. Without, the median of the metric itself is
// checked. A budget applies to every result of Kind and Case whose
// parameters include Match; unary budgets that do not name a workload
// apply to the run's primary workload.
type Budget struct {
	Name     string            `yaml:"name"`
	Kind     Kind              `yaml:"kind"`
	Case     string            `yaml:"case"`
	Baseline string            `yaml:"baseline,omitempty"`
	Metric   string            `yaml:"metric"`
	Match    map[string]string `yaml:"match,omitempty"`
	Min      *float64          `yaml:"min,omitempty"`
	Max      *float64          `yaml:"max,omitempty"`
}

// BudgetStatus is the outcome of a budget on one result.
type BudgetStatus string

// Budget outcomes. A skipped budget had nothing to check: its stack was
// not available, its kind was not run, or a measurement failed.
const (
	BudgetMet     BudgetStatus = "met"
	BudgetMissed  BudgetStatus = "missed"
	BudgetSkipped BudgetStatus = "skipped"
)

// BudgetLine is a budget checked against one result.
type BudgetLine struct {
	Budget Budget            `json:"budget"`
	Params map[string]string `json:"params,omitempty"`
	Status BudgetStatus      `json:"status"`
	// Value is the median ratio (ratio budgets) or the median of the
	// metric; Min and Max the extremes over the rounds.
	Value float64 `json:"value"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	// Rounds is the number of rounds paired.
	Rounds int    `json:"rounds"`
	Note   string `json:"note,omitempty"`
}

// DefaultBudgets returns the budgets of bench/budgets.yaml, built into the
// program.
func DefaultBudgets() (*Budgets, error) {
	return ParseBudgets(bytes.NewReader(defaultBudgets))
}

// LoadBudgets reads budgets from a YAML file shaped like
// bench/budgets.yaml.
func LoadBudgets(path string) (*Budgets, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: budgets: %w", err)
	}
	defer f.Close()
	b, err := ParseBudgets(f)
	if err != nil {
		return nil, fmt.Errorf("bench: budgets %s: %w", path, err)
	}
	return b, nil
}

// ParseBudgets reads budgets in YAML; unknown fields are refused, so that
// a misspelt limit is not silently ignored.
func ParseBudgets(r io.Reader) (*Budgets, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var b Budgets
	if err := dec.Decode(&b); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	for i, bu := range b.Budgets {
		if err := bu.validate(); err != nil {
			return nil, fmt.Errorf("budget %d (%q): %w", i+1, bu.Name, err)
		}
	}
	return &b, nil
}

func (b Budget) validate() error {
	switch {
	case b.Name == "":
		return errors.New("no name")
	case !slices.Contains(AllKinds(), b.Kind):
		return fmt.Errorf("kind %q is not one of %v", b.Kind, AllKinds())
	case b.Case == "":
		return errors.New("no case (a stack, an implementation or an interceptor)")
	case b.Metric == "":
		return errors.New("no metric")
	case b.Min == nil && b.Max == nil:
		return errors.New("neither min nor max")
	case b.Min != nil && b.Max != nil && *b.Min > *b.Max:
		return errors.New("min above max")
	}
	return nil
}

// Check checks every budget against rep.
func (bs *Budgets) Check(rep *Report) []BudgetLine {
	var out []BudgetLine
	for _, b := range bs.Budgets {
		out = append(out, b.check(rep)...)
	}
	return out
}

func (b Budget) check(rep *Report) []BudgetLine {
	match := b.Match
	if b.Kind == KindUnary && match["workload"] == "" {
		match = map[string]string{"workload": rep.Settings.PrimaryWorkload}
		for k, v := range b.Match {
			if k != "workload" {
				match[k] = v
			}
		}
	}
	var out []BudgetLine
	for _, r := range rep.Results {
		if r.Kind != b.Kind || r.Case != b.Case || !matches(r.Params, match) {
			continue
		}
		out = append(out, b.checkResult(rep, r))
	}
	if len(out) == 0 {
		out = append(out, BudgetLine{Budget: b, Params: match, Status: BudgetSkipped,
			Note: fmt.Sprintf("no %s result for %s in this run", b.Kind, b.Case)})
	}
	return out
}

func (b Budget) checkResult(rep *Report, r Result) BudgetLine {
	line := BudgetLine{Budget: b, Params: r.Params, Status: BudgetSkipped}
	mine, ok := r.Metrics[b.Metric]
	if r.Error != "" || !ok || len(mine.Values) == 0 {
		line.Note = "no measurement: " + firstNonEmpty(r.Error, "metric "+b.Metric+" missing")
		return line
	}
	values := mine.Values
	if b.Baseline != "" {
		base, ok := rep.Find(b.Kind, b.Baseline, r.Params)
		theirs, hasMetric := base.Metrics[b.Metric]
		if !ok || base.Error != "" || !hasMetric || len(theirs.Values) == 0 {
			line.Note = "no baseline measurement of " + b.Baseline
			return line
		}
		n := min(len(values), len(theirs.Values))
		ratios := make([]float64, 0, n)
		for i := range n {
			if theirs.Values[i] != 0 {
				ratios = append(ratios, values[i]/theirs.Values[i])
			}
		}
		values = ratios
	}
	if len(values) == 0 {
		line.Note = "nothing to compare"
		return line
	}
	s := newStat("", values)
	line.Value, line.Min, line.Max, line.Rounds = s.Median, s.Min, s.Max, len(values)
	line.Status = BudgetMet
	if (b.Min != nil && s.Median < *b.Min) || (b.Max != nil && s.Median > *b.Max) {
		line.Status = BudgetMissed
	}
	return line
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Limit describes the budget's limit: "≥ 0.90 × plaintext", "≤ 50".
func (b Budget) Limit() string {
	var parts []string
	unit := ""
	if b.Baseline != "" {
		unit = " × " + b.Baseline
	}
	if b.Min != nil {
		parts = append(parts, fmt.Sprintf("≥ %s%s", trimFloat(*b.Min), unit))
	}
	if b.Max != nil {
		parts = append(parts, fmt.Sprintf("≤ %s%s", trimFloat(*b.Max), unit))
	}
	return strings.Join(parts, ", ")
}

// Line describes the outcome in one line: the budget, the result it was
// checked on, the median with the range over the rounds, and the limit.
func (l BudgetLine) Line() string {
	where := paramString(l.Params)
	if where != "" {
		where = " [" + where + "]"
	}
	head := fmt.Sprintf("%s%s: %s %s", l.Budget.Name, where, l.Budget.Metric, l.Budget.Limit())
	if l.Status == BudgetSkipped {
		return head + ": skipped, " + l.Note
	}
	what := "value"
	if l.Budget.Baseline != "" {
		what = "ratio"
	}
	return fmt.Sprintf("%s: %s %s (%s–%s over %d rounds)", head, what, trimFloat(l.Value),
		trimFloat(l.Min), trimFloat(l.Max), l.Rounds)
}

func trimFloat(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}
