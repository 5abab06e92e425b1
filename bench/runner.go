package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Progress reports one finished measurement of a run.
type Progress struct {
	// Done and Total count measurements; Total is an estimate until the
	// run knows which cases are available.
	Done, Total int
	// Round is the round (1-based) of the measurement, out of Rounds.
	Round, Rounds int
	Kind          Kind
	// Case names the stack or implementation, Params the rest.
	Case   string
	Params string
	// Summary is the measurement's main figure, such as "12345 calls/s".
	Summary string
	// Elapsed is the time since the run started; Remaining estimates the
	// time left.
	Elapsed, Remaining time.Duration
	// Err is the measurement's failure, if it failed.
	Err error
}

// value is one metric of one measurement.
type value struct {
	name, unit string
	v          float64
}

// sample is what one measurement produced.
type sample struct {
	values    []value
	latencies []time.Duration
	summary   string
}

// caseRun is one case of a kind, measured once per round.
type caseRun struct {
	kind    Kind
	name    string
	params  map[string]string
	measure func(ctx context.Context) (sample, error)

	order     []string
	units     map[string]string
	values    map[string][]float64
	latencies []time.Duration
	err       error
	note      string
}

func newCase(
	kind Kind,
	name string,
	params map[string]string,
	measure func(ctx context.Context) (sample, error),
) *caseRun {
	return &caseRun{kind: kind, name: name, params: params, measure: measure,
		units: map[string]string{}, values: map[string][]float64{}}
}

func (c *caseRun) add(s sample) {
	for _, v := range s.values {
		if _, ok := c.units[v.name]; !ok {
			c.order = append(c.order, v.name)
			c.units[v.name] = v.unit
		}
		c.values[v.name] = append(c.values[v.name], v.v)
	}
	c.latencies = append(c.latencies, s.latencies...)
}

// paramOrder is the order parameters are printed in.
var paramOrder = []string{
	"workload", "concurrency", "key", "kx", "mode", "registry", "side", "message",
}

func paramString(p map[string]string) string {
	var parts []string
	for _, k := range paramOrder {
		if v, ok := p[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	for k, v := range p {
		if !slices.Contains(paramOrder, k) {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

type runner struct {
	cfg    Config
	rep    *Report
	start  time.Time
	done   int
	total  int
	failed []error
}

// Run measures what cfg asks for and returns the report, with the
// budgets of cfg checked. Measurements that cannot run here (a stack not
// available, no consul binary) are skipped with a note in the report.
// Run returns an error, with the report of what was measured, when a
// measurement fails; a missed budget is not an error (see
// [Report.Missed]). Run starts servers on loopback ports only and stops
// everything it started before it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, start: time.Now(), rep: newReport(cfg)}
	r.total = r.estimate()
	m, err := newMaterial()
	if err != nil {
		return nil, err
	}

	if cfg.runs(KindUnary) || cfg.runs(KindStream) {
		if err := r.runStacks(ctx, m); err != nil {
			return r.finish(), err
		}
	}
	if cfg.runs(KindHandshake) {
		cases, cleanup, err := handshakeCases(cfg)
		if err != nil {
			return r.finish(), err
		}
		r.rounds(ctx, cases)
		r.collect(cases)
		cleanup()
	}
	if cfg.runs(KindInterceptor) {
		cases, err := interceptorCases(cfg, m)
		if err != nil {
			return r.finish(), err
		}
		r.rounds(ctx, cases)
		finishInterceptors(cases)
		r.collect(cases)
	}
	if cfg.runs(KindColdStart) {
		cases, cleanup, notes := coldStartCases(ctx, cfg)
		r.rep.Notes = append(r.rep.Notes, notes...)
		r.rounds(ctx, cases)
		r.collect(cases)
		cleanup()
	}
	rep := r.finish()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	return rep, errors.Join(r.failed...)
}

// runStacks starts an instance of every available stack for each
// workload, for the unary and stream measurements, and stops them all
// afterwards. A stack that refuses a workload (moat without a keyset
// refuses to serve SECRET fields) runs the others.
func (r *runner) runStacks(ctx context.Context, m *material) error {
	var (
		started []*startedStack
		unary   []*caseRun
		stream  []*caseRun
	)
	defer func() {
		for _, s := range started {
			_ = s.ep.close()
		}
	}()
	for _, st := range r.cfg.Stacks {
		info := StackInfo{Name: st.name, Description: st.description, Available: true}
		var first *startedStack
		for _, w := range r.cfg.Workloads {
			s, err := startStack(ctx, st, m, w)
			if errors.Is(err, ErrUnavailable) {
				r.rep.Notes = append(r.rep.Notes,
					fmt.Sprintf("%s on stack %s skipped: %v", w.Name(), st.name, err))
				continue
			}
			if err != nil {
				return fmt.Errorf("bench: start stack %s for %s: %w", st.name, w.Name(), err)
			}
			started = append(started, s)
			if first == nil {
				first = s
			}
			if r.cfg.runs(KindUnary) {
				unary = append(unary, unaryCases(r.cfg, s, w)...)
			}
		}
		if first == nil {
			info.Available, info.Note = false, "no workload runs on it"
			if st.unavailable != nil {
				info.Note = st.unavailable.Error()
			}
		} else if r.cfg.runs(KindStream) {
			stream = append(stream, streamCase(r.cfg, first))
		}
		r.rep.Stacks = append(r.rep.Stacks, info)
	}
	r.rounds(ctx, unary)
	r.collect(unary)
	r.rounds(ctx, stream)
	r.collect(stream)
	return nil
}

type startedStack struct {
	name string
	ep   *endpoint
}

// startStack serves the bench API and w on st, and makes one call of w,
// which opens the connection and checks that the stack answers correctly
// before anything is timed.
func startStack(ctx context.Context, st Stack, m *material, w Workload) (*startedStack, error) {
	if st.unavailable != nil {
		return nil, st.unavailable
	}
	if st.start == nil {
		return nil, fmt.Errorf("%w: stack %s has no implementation", ErrUnavailable, st.name)
	}
	ep, err := st.start(ctx, m, func(s grpc.ServiceRegistrar) {
		d := &dedupRegistrar{s: s, seen: map[string]bool{}}
		benchServer{}.register(d)
		w.Register(d)
	})
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.Call(callCtx, ep.conn); err != nil {
		_ = ep.close()
		return nil, fmt.Errorf("first %s call: %w", w.Name(), err)
	}
	return &startedStack{name: st.name, ep: ep}, nil
}

// rounds measures every case once per round. Cases that are compared,
// those with the same parameters (one per stack or implementation), run
// back to back, in an order rotated from one round to the next, so that a
// ratio divides two measurements taken moments apart and no case always
// follows the same neighbour. A case that fails is not measured again.
func (r *runner) rounds(ctx context.Context, cases []*caseRun) {
	groups := groupByParams(cases)
	for round := range r.cfg.Repeats {
		for _, g := range groups {
			for i := range g {
				c := g[(i+round)%len(g)]
				r.measure(ctx, c, round)
			}
		}
	}
}

func (r *runner) measure(ctx context.Context, c *caseRun, round int) {
	r.done++
	if c.err != nil || ctx.Err() != nil {
		return
	}
	runtime.GC()
	s, err := c.measure(ctx)
	if err != nil {
		c.err = err
		r.failed = append(r.failed, fmt.Errorf("bench: %s %s %s: %w",
			c.kind, c.name, paramString(c.params), err))
	} else {
		c.add(s)
	}
	r.report(c, round, s.summary, err)
}

// groupByParams groups cases of identical parameters, in the order they
// first appear.
func groupByParams(cases []*caseRun) [][]*caseRun {
	var (
		groups [][]*caseRun
		index  = map[string]int{}
	)
	for _, c := range cases {
		key := paramString(c.params)
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], c)
	}
	return groups
}

func (r *runner) report(c *caseRun, round int, summary string, err error) {
	if r.cfg.Progress == nil {
		return
	}
	elapsed := time.Since(r.start)
	var remaining time.Duration
	if r.done > 0 && r.total > r.done {
		remaining = elapsed / time.Duration(r.done) * time.Duration(r.total-r.done)
	}
	r.cfg.Progress(Progress{
		Done: r.done, Total: max(r.total, r.done), Round: round + 1, Rounds: r.cfg.Repeats,
		Kind: c.kind, Case: c.name, Params: paramString(c.params), Summary: summary,
		Elapsed: elapsed, Remaining: remaining, Err: err,
	})
}

// estimate counts the measurements of the run, before knowing which
// stacks and components are available.
func (r *runner) estimate() int {
	c := r.cfg
	n := 0
	if c.runs(KindUnary) {
		// At most: a stack may refuse a workload.
		n += len(c.Stacks) * len(c.Workloads) * len(c.Concurrency)
	}
	if c.runs(KindStream) {
		n += len(c.Stacks)
	}
	if c.runs(KindHandshake) {
		n += len(handshakeSpecs(c))
	}
	if c.runs(KindInterceptor) {
		n += len(interceptorSpecs)
	}
	if c.runs(KindColdStart) {
		n++
		if c.Consul != ConsulOff {
			n++
		}
	}
	return n * c.Repeats
}

func (r *runner) collect(cases []*caseRun) {
	for _, c := range cases {
		r.rep.Results = append(r.rep.Results, c.result())
	}
}

func (r *runner) finish() *Report {
	r.rep.ElapsedSeconds = time.Since(r.start).Seconds()
	if r.cfg.Budgets != nil {
		r.rep.Budgets = r.cfg.Budgets.Check(r.rep)
	}
	return r.rep
}
