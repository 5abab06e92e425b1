package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Chart geometry, in pixels: the plot area sits inside the padding; under
// it come the x labels (up to three lines), then the legend.
const (
	chartW, chartH         = 580, 344
	padL, padR, padT       = 62, 16, 12
	plotW, plotH           = chartW - padL - padR, 240
	plotBottom             = padT + plotH
	legendTop              = plotBottom + 58
	legendRowH, legendColW = 16, 135
	barGroupGap            = 0.25
)

// svgWriter writes SVG elements, every attribute quoted.
type svgWriter struct{ b strings.Builder }

func (s *svgWriter) line(x1, y1, x2, y2 float64, stroke string) {
	fmt.Fprintf(&s.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`,
		x1, y1, x2, y2, stroke)
}

func (s *svgWriter) text(x, y float64, anchor, label string) {
	fmt.Fprintf(&s.b, `<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, x, y, anchor, esc(label))
}

func (s *svgWriter) rect(x, y, w, h float64, fill, title string) {
	fmt.Fprintf(&s.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">`+
		`<title>%s</title></rect>`, x, y, w, h, fill, esc(title))
}

func (s *svgWriter) circle(x, y float64, fill, title string) {
	fmt.Fprintf(&s.b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s</title></circle>`,
		x, y, fill, esc(title))
}

func (s *svgWriter) polyline(points []string, stroke, title string) {
	fmt.Fprintf(&s.b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2">`+
		`<title>%s</title></polyline>`, strings.Join(points, " "), stroke, esc(title))
}

// axis maps values to a fraction of the plot's height, linearly from 0 or
// logarithmically.
type axis struct {
	log      bool
	lo, hi   float64
	ticks    []float64
	unitText string
}

// linearAxis runs from 0 to a round value at or above maxV.
func linearAxis(maxV float64) axis {
	if maxV <= 0 || math.IsNaN(maxV) || math.IsInf(maxV, 0) {
		maxV = 1
	}
	raw := maxV / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	a := axis{}
	for i := 0; ; i++ {
		v := float64(i) * step
		a.ticks = append(a.ticks, v)
		if v >= maxV*(1-1e-9) {
			a.hi = v
			return a
		}
	}
}

// logAxis runs from the 1-2-5 value at or below lo to the one at or above
// hi, with a tick at each.
func logAxis(lo, hi float64) axis {
	if lo <= 0 {
		lo = hi / 1000
	}
	if hi <= lo {
		hi = lo * 10
	}
	var steps []float64
	for e := math.Floor(math.Log10(lo)) - 1; e <= math.Ceil(math.Log10(hi))+1; e++ {
		for _, m := range []float64{1, 2, 5} {
			steps = append(steps, m*math.Pow(10, e))
		}
	}
	a := axis{log: true}
	for i, v := range steps {
		if i+1 < len(steps) && steps[i+1] <= lo {
			continue
		}
		a.ticks = append(a.ticks, v)
		if v >= hi {
			break
		}
	}
	a.lo, a.hi = a.ticks[0], a.ticks[len(a.ticks)-1]
	return a
}

// frac returns where v sits on the axis, 0 at the bottom, 1 at the top.
func (a axis) frac(v float64) float64 {
	if a.log {
		v = math.Max(v, a.lo)
		return (math.Log(v) - math.Log(a.lo)) / (math.Log(a.hi) - math.Log(a.lo))
	}
	return v / a.hi
}

// chart is one figure: a plot area with a y axis, x labels and a legend.
type chart struct {
	svgWriter
	y axis
}

func newChart(title, yLabel string, y axis) *chart {
	c := &chart{y: y}
	fmt.Fprintf(&c.b, `<figure><figcaption>%s</figcaption><svg width="%d" height="%d" `+
		`viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		esc(title), chartW, chartH, chartW, chartH, esc(title))
	for _, t := range y.ticks {
		c.line(padL, c.py(t), padL+plotW, c.py(t), "#e8e8e8")
		c.text(padL-6, c.py(t)+4, "end", tickLabel(t))
	}
	c.line(padL, plotBottom, padL+plotW, plotBottom, "#888")
	c.line(padL, padT, padL, plotBottom, "#888")
	fmt.Fprintf(&c.b, `<text transform="translate(14 %d) rotate(-90)" text-anchor="middle">%s</text>`,
		padT+plotH/2, esc(yLabel))
	return c
}

// py returns the pixel row of a y value.
func (c *chart) py(v float64) float64 { return plotBottom - c.y.frac(v)*plotH }

// xTitle names the x axis, under the tick labels.
func (c *chart) xTitle(title string) { c.text(padL+plotW/2, plotBottom+34, "middle", title) }

// legend names the series under the plot, a few to a row.
func (c *chart) legend(names, colors []string) {
	perRow := plotW / legendColW
	for i, n := range names {
		x := float64(padL + (i%perRow)*legendColW)
		y := float64(legendTop + (i/perRow)*legendRowH)
		fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="12" height="4" fill="%s"/>`, x, y-4, colors[i])
		c.text(x+16, y, "start", n)
	}
}

func (c *chart) String() string { return c.b.String() + "</svg></figure>\n" }

func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 10000:
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	case a >= 1 || a == 0:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// series is one line of a chart.
type series struct {
	name   string
	points []point
}

type point struct{ x, y, lo, hi float64 }

// throughputChart draws calls per second against calls in flight for one
// workload, one line per stack, whiskers from the slowest to the fastest
// round.
func (rep *Report) throughputChart(workload string) string {
	levels := rep.Settings.Concurrency
	var (
		ss   []series
		yMax float64
	)
	for _, r := range rep.Results {
		st, ok := r.Metrics["calls_per_s"]
		if r.Kind != KindUnary || r.Params["workload"] != workload || !ok || len(st.Values) == 0 {
			continue
		}
		n, _ := strconv.Atoi(r.Params["concurrency"])
		i := slices.IndexFunc(ss, func(s series) bool { return s.name == r.Case })
		if i < 0 {
			ss = append(ss, series{name: r.Case})
			i = len(ss) - 1
		}
		ss[i].points = append(ss[i].points, point{x: float64(slices.Index(levels, n)),
			y: st.Median, lo: st.Min, hi: st.Max})
		yMax = max(yMax, st.Max)
	}
	if len(ss) == 0 {
		return ""
	}
	c := newChart("Throughput against calls in flight — "+workload, "calls/s", linearAxis(yMax))
	step := float64(plotW) / float64(len(levels))
	px := func(i float64) float64 { return padL + step*(i+0.5) }
	for i, n := range levels {
		c.text(px(float64(i)), plotBottom+16, "middle", strconv.Itoa(n))
	}
	c.xTitle("calls in flight")
	for si, s := range ss {
		// Stacks side by side within a level, so that whiskers do not hide
		// each other.
		off := (float64(si) - float64(len(ss)-1)/2) * 7
		color := rep.color(s.name)
		var path []string
		for _, p := range s.points {
			x := px(p.x) + off
			path = append(path, fmt.Sprintf("%.1f,%.1f", x, c.py(p.y)))
			c.line(x, c.py(p.lo), x, c.py(p.hi), color)
			c.circle(x, c.py(p.y), color,
				fmt.Sprintf("%s: %.0f calls/s (%.0f–%.0f)", s.name, p.y, p.lo, p.hi))
		}
		c.polyline(path, color, s.name)
	}
	c.legend(rep.seriesLegend(ss))
	return c.String()
}

func (rep *Report) seriesLegend(ss []series) (names, colors []string) {
	for _, s := range ss {
		names = append(names, s.name)
		colors = append(colors, rep.color(s.name))
	}
	return names, colors
}

// tail maps a quantile to the x axis of a latency chart: 0 at the start,
// one unit per nine (90%, 99%, 99.9%), so that the tail gets the room.
func tail(q float64) float64 { return -math.Log10(1 - q) }

// latencyChart draws the latency distribution of one workload at one
// level of concurrency, one line per stack, all rounds together, latency
// on a logarithmic scale.
func (rep *Report) latencyChart(workload string, inFlight int) string {
	const maxTail = 3.3 // 99.95%
	var (
		ss     []series
		lo, hi = math.Inf(1), 0.0
	)
	for _, r := range rep.Results {
		if r.Kind != KindUnary || r.Params["workload"] != workload ||
			r.Params["concurrency"] != strconv.Itoa(inFlight) || len(r.Latency) == 0 {
			continue
		}
		s := series{name: r.Case}
		for _, q := range r.Latency {
			if q.Q >= 1 || tail(q.Q) > maxTail+1e-9 || q.Ms <= 0 {
				continue
			}
			s.points = append(s.points, point{x: tail(q.Q), y: q.Ms})
			lo, hi = math.Min(lo, q.Ms), math.Max(hi, q.Ms)
		}
		ss = append(ss, s)
	}
	if len(ss) == 0 || hi == 0 {
		return ""
	}
	c := newChart(fmt.Sprintf("Latency distribution — %s, %d in flight", workload, inFlight),
		"latency ms (log)", logAxis(lo, hi))
	px := func(t float64) float64 { return padL + t/maxTail*plotW }
	for _, t := range []struct {
		q     float64
		label string
	}{{0, "0%"}, {0.5, "50%"}, {0.9, "90%"}, {0.99, "99%"}, {0.999, "99.9%"}} {
		c.line(px(tail(t.q)), padT, px(tail(t.q)), plotBottom, "#e8e8e8")
		c.text(px(tail(t.q)), plotBottom+16, "middle", t.label)
	}
	c.xTitle("percentile of calls")
	for _, s := range ss {
		var path []string
		for _, p := range s.points {
			path = append(path, fmt.Sprintf("%.1f,%.1f", px(p.x), c.py(p.y)))
		}
		c.polyline(path, rep.color(s.name), s.name)
	}
	c.legend(rep.seriesLegend(ss))
	return c.String()
}

// Short names of keys and key exchanges, for chart labels.
var (
	shortKey = map[string]string{"ecdsa-p256": "ECDSA", "ed25519": "Ed25519", "rsa-2048": "RSA"}
	shortKX  = map[string]string{KXX25519: "X25519", KXHybrid: "hybrid"}
)

// handshakeChart draws CPU per handshake of each configuration, bare
// crypto/tls beside moat.
func (rep *Report) handshakeChart() string {
	return rep.barChart(KindHandshake, "CPU per mutual TLS 1.3 handshake (both sides)",
		"cpu_us_per_handshake", "CPU µs", func(r Result) string {
			return firstNonEmpty(shortKey[r.Params["key"]], r.Params["key"]) + " " +
				firstNonEmpty(shortKX[r.Params["kx"]], r.Params["kx"]) + " " + r.Params["mode"]
		}, 0)
}

// barChart draws one bar per result of kind with the metric, grouped by
// the label group returns (an empty label leaves the result out), one
// colour per case, whiskers from the lowest to the highest round, and a
// dashed line at limit unless it is 0.
func (rep *Report) barChart(
	kind Kind,
	title, metric, yLabel string,
	group func(Result) string,
	limit float64,
) string {
	var (
		groups []string
		cases  []string
		bars   = map[string][]Result{}
		yMax   float64
	)
	for _, r := range rep.Results {
		st, ok := r.Metrics[metric]
		g := ""
		if r.Kind == kind && ok && len(st.Values) > 0 {
			g = group(r)
		}
		if g == "" {
			continue
		}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
		if !slices.Contains(cases, r.Case) {
			cases = append(cases, r.Case)
		}
		bars[g] = append(bars[g], r)
		yMax = max(yMax, st.Max)
	}
	if len(groups) == 0 {
		return ""
	}
	c := newChart(title, yLabel, linearAxis(max(yMax, limit*1.1)))
	widest := 1
	for _, g := range groups {
		widest = max(widest, len(bars[g]))
	}
	groupW := float64(plotW) / float64(len(groups))
	barW := groupW * (1 - barGroupGap) / float64(widest)
	for gi, g := range groups {
		// The bars of a group sit side by side, centred in the group.
		x0 := padL + groupW*float64(gi) + groupW*barGroupGap/2 +
			barW*float64(widest-len(bars[g]))/2
		for i, r := range bars[g] {
			st := r.Metrics[metric]
			x := x0 + barW*float64(i)
			top := c.py(max(st.Median, 0))
			c.rect(x, top, math.Max(barW-2, 1), plotBottom-top, rep.color(r.Case),
				fmt.Sprintf("%s %s: %s %s (%s–%s)", r.Case, g, trimFloat(st.Median), yLabel,
					trimFloat(st.Min), trimFloat(st.Max)))
			mid := x + (barW-2)/2
			c.line(mid, c.py(max(st.Min, 0)), mid, c.py(max(st.Max, 0)), "#333")
			c.line(mid-3, c.py(max(st.Max, 0)), mid+3, c.py(max(st.Max, 0)), "#333")
		}
		for li, word := range strings.Fields(g) {
			c.text(padL+groupW*(float64(gi)+0.5), float64(plotBottom+16+li*12), "middle", word)
		}
	}
	if limit > 0 {
		fmt.Fprintf(&c.b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#cf222e" `+
			`stroke-dasharray="6 4"/>`, padL, c.py(limit), padL+plotW, c.py(limit))
		c.text(padL+plotW-4, c.py(limit)-4, "end", "budget "+trimFloat(limit)+" "+yLabel)
	}
	colors := make([]string, len(cases))
	for i, name := range cases {
		colors[i] = rep.color(name)
	}
	c.legend(cases, colors)
	return c.String()
}
