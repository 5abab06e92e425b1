package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// palette colours the series of the charts, by order of first
// appearance; readable by most colour-blind readers.
var palette = []string{"#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"}

// WriteHTML writes the report as one self-contained HTML page: inline SVG
// charts (latency distribution per stack, throughput against concurrency,
// handshake cost, streaming, interceptors, cold start), the budgets and
// the full tables. It needs no network and no script.
func (rep *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>moat bench</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1240px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(590px,1fr));gap:16px}
figure{margin:0;border:1px solid #e4e4e4;border-radius:6px;padding:8px;background:#fff}
figcaption{font-weight:600;margin-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
.met{color:#1a7f37;font-weight:600}.missed{color:#cf222e;font-weight:600}.skipped{color:#777}
.note{color:#555}.small{font-size:12px;color:#555}
svg text{font:11px system-ui,sans-serif;fill:#333}
</style></head><body>
`)
	fmt.Fprintf(&b, "<h1>moat bench</h1><p class=small>%s · %s %s/%s · %d CPUs, GOMAXPROCS %d · "+
		"%d rounds of %s per measurement%s · %.0f s · figures are medians over the rounds, "+
		"whiskers and ± the range</p>\n",
		esc(rep.Started.Format("2006-01-02 15:04:05 MST")), esc(rep.Host.GoVersion), rep.Host.OS,
		rep.Host.Arch, rep.Host.CPUs, rep.Host.GOMAXPROCS, rep.Settings.Repeats,
		esc(rep.Settings.Duration), map[bool]string{true: " (quick smoke run)"}[rep.Settings.Quick],
		rep.ElapsedSeconds)
	rep.htmlBudgets(&b)
	rep.htmlStacks(&b)

	b.WriteString("<h2>Unary calls</h2><div class=grid>\n")
	for _, wl := range rep.Settings.Workloads {
		b.WriteString(rep.throughputChart(wl))
	}
	for _, c := range rep.Settings.Concurrency {
		b.WriteString(rep.latencyChart(rep.Settings.PrimaryWorkload, c))
	}
	b.WriteString("</div>\n<h2>Handshakes, streaming, interceptors, cold start</h2><div class=grid>\n")
	b.WriteString(rep.handshakeChart())
	b.WriteString(rep.barChart(KindStream, "Server streaming of 64 KiB messages", "mb_per_s", "MB/s",
		func(r Result) string { return r.Case }))
	b.WriteString(rep.barChart(KindInterceptor, "Interceptor cost per call over a bare handler",
		"cost_ns", "ns", func(r Result) string {
			if r.Case == InterceptorNone {
				return ""
			}
			return r.Case + " " + r.Params["side"] + " " + r.Params["message"]
		}))
	b.WriteString(rep.barChart(KindColdStart, "Cold start: NewService to first call", "total_ms", "ms",
		func(r Result) string { return r.Params["registry"] }))
	b.WriteString("</div>\n")
	rep.htmlTables(&b)
	if len(rep.Notes) > 0 {
		b.WriteString("<h2>Notes</h2><ul>")
		for _, n := range rep.Notes {
			fmt.Fprintf(&b, "<li class=note>%s</li>", esc(n))
		}
		b.WriteString("</ul>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return html.EscapeString(s) }

func (rep *Report) htmlBudgets(b *strings.Builder) {
	if len(rep.Budgets) == 0 {
		return
	}
	b.WriteString("<h2>Budgets</h2><table><tr><th>budget</th><th>result</th><th>limit</th>" +
		"<th>median</th><th>range over rounds</th><th>status</th></tr>\n")
	for _, l := range rep.Budgets {
		val, rng := "", l.Note
		if l.Status != BudgetSkipped {
			val = trimFloat(l.Value)
			rng = trimFloat(l.Min) + " – " + trimFloat(l.Max)
		}
		fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td><td>%s %s</td><td>%s</td><td>%s</td>"+
			"<td class=%s>%s</td></tr>\n", esc(l.Budget.Name), esc(paramString(l.Params)),
			esc(l.Budget.Metric), esc(l.Budget.Limit()), val, esc(rng), l.Status, l.Status)
	}
	b.WriteString("</table>\n")
}

func (rep *Report) htmlStacks(b *strings.Builder) {
	if len(rep.Stacks) == 0 {
		return
	}
	b.WriteString("<h2>Stacks</h2><table>")
	for _, s := range rep.Stacks {
		desc := s.Description
		if !s.Available {
			desc += " — not available: " + s.Note
		}
		fmt.Fprintf(b, "<tr><td><b style=\"color:%s\">%s</b></td><td style=\"text-align:left\">%s</td></tr>",
			rep.color(s.Name), esc(s.Name), esc(desc))
	}
	b.WriteString("</table>\n")
}

func (rep *Report) htmlTables(b *strings.Builder) {
	b.WriteString("<h2>All results</h2>\n")
	for _, sec := range sections {
		var rows []Result
		for _, r := range rep.Results {
			if r.Kind == sec.kind {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(b, "<h3>%s</h3><table><tr><th>case</th>", esc(sec.title))
		for _, p := range sec.params {
			fmt.Fprintf(b, "<th>%s</th>", esc(p))
		}
		for _, c := range sec.cols {
			fmt.Fprintf(b, "<th>%s</th>", esc(c.title))
		}
		b.WriteString("<th></th></tr>\n")
		for _, r := range rows {
			fmt.Fprintf(b, "<tr><td>%s</td>", esc(r.Case))
			for _, p := range sec.params {
				fmt.Fprintf(b, "<td>%s</td>", esc(r.Params[p]))
			}
			for _, c := range sec.cols {
				fmt.Fprintf(b, "<td>%s</td>", esc(formatStat(r, c)))
			}
			note := r.Note
			if r.Error != "" {
				note = "FAILED: " + r.Error
			}
			fmt.Fprintf(b, "<td class=note style=\"text-align:left;white-space:normal\">%s</td></tr>\n", esc(note))
		}
		b.WriteString("</table>\n")
	}
}

// color returns the colour of a series name, the same in every chart.
func (rep *Report) color(name string) string {
	var names []string
	for _, s := range rep.Stacks {
		names = append(names, s.Name)
	}
	for _, r := range rep.Results {
		if !slices.Contains(names, r.Case) {
			names = append(names, r.Case)
		}
	}
	i := slices.Index(names, name)
	if i < 0 {
		i = len(palette) - 1
	}
	return palette[i%len(palette)]
}

// chart frame geometry.
const (
	chartW, chartH               = 580, 330
	padL, padR, padT, padB       = 62, 16, 14, 64
	plotW, plotH                 = chartW - padL - padR, chartH - padT - padB
	legendRowH, legendItemW      = 16, 135
	barGroupGap, whiskerHalfWide = 0.25, 3
)

type point struct{ x, y, lo, hi float64 }

type series struct {
	name   string
	color  string
	points []point
}

// frame writes the figure, the y axis with its grid and label, and
// returns a function mapping a y value to its pixel row.
func frame(b *strings.Builder, title, yLabel string, yMax float64) func(float64) float64 {
	ticks := niceTicks(yMax)
	top := ticks[len(ticks)-1]
	y := func(v float64) float64 { return padT + plotH - v/top*plotH }
	fmt.Fprintf(b, "<figure><figcaption>%s</figcaption><svg width=%d height=%d viewBox=\"0 0 %d %d\" "+
		"role=img aria-label=\"%s\">", esc(title), chartW, chartH, chartW, chartH, esc(title))
	for _, t := range ticks {
		fmt.Fprintf(b, "<line x1=%d x2=%d y1=%.1f y2=%.1f stroke=\"#e8e8e8\"/>", padL, padL+plotW, y(t), y(t))
		fmt.Fprintf(b, "<text x=%d y=%.1f text-anchor=end dominant-baseline=middle>%s</text>",
			padL-6, y(t), tickLabel(t))
	}
	fmt.Fprintf(b, "<line x1=%d x2=%d y1=%d y2=%d stroke=\"#888\"/>", padL, padL+plotW, padT+plotH, padT+plotH)
	fmt.Fprintf(b, "<line x1=%d x2=%d y1=%d y2=%d stroke=\"#888\"/>", padL, padL, padT, padT+plotH)
	fmt.Fprintf(b, "<text transform=\"translate(14 %d) rotate(-90)\" text-anchor=middle>%s</text>",
		padT+plotH/2, esc(yLabel))
	return y
}

func endFrame(b *strings.Builder) { b.WriteString("</svg></figure>\n") }

// legend writes the series names under the plot.
func legend(b *strings.Builder, ss []series) {
	perRow := plotW / legendItemW
	for i, s := range ss {
		x := padL + (i%perRow)*legendItemW
		y := chartH - 30 + (i/perRow)*legendRowH
		fmt.Fprintf(b, "<rect x=%d y=%d width=12 height=4 fill=\"%s\"/><text x=%d y=%d>%s</text>",
			x, y-4, s.color, x+16, y, esc(s.name))
	}
}

// niceTicks returns 0 and round steps up to at least max.
func niceTicks(maxV float64) []float64 {
	if maxV <= 0 || math.IsNaN(maxV) || math.IsInf(maxV, 0) {
		maxV = 1
	}
	raw := maxV / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for v := 0.0; ; v += step {
		ticks = append(ticks, v)
		if v >= maxV-1e-12 {
			break
		}
	}
	return ticks
}

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

// throughputChart draws calls per second against calls in flight, one
// line per stack, whiskers from the slowest to the fastest round.
func (rep *Report) throughputChart(workload string) string {
	levels := rep.Settings.Concurrency
	var ss []series
	yMax := 0.0
	for _, r := range rep.Results {
		if r.Kind != KindUnary || r.Params["workload"] != workload {
			continue
		}
		st, ok := r.Metrics["calls_per_s"]
		if !ok || len(st.Values) == 0 {
			continue
		}
		n, _ := strconv.Atoi(r.Params["concurrency"])
		i := slices.IndexFunc(ss, func(s series) bool { return s.name == r.Case })
		if i < 0 {
			ss = append(ss, series{name: r.Case, color: rep.color(r.Case)})
			i = len(ss) - 1
		}
		ss[i].points = append(ss[i].points, point{x: float64(slices.Index(levels, n)),
			y: st.Median, lo: st.Min, hi: st.Max})
		yMax = max(yMax, st.Max)
	}
	if len(ss) == 0 {
		return ""
	}
	var b strings.Builder
	y := frame(&b, "Throughput against calls in flight — "+workload, "calls/s", yMax)
	step := float64(plotW) / float64(len(levels))
	x := func(i float64) float64 { return padL + step*(i+0.5) }
	for i, n := range levels {
		fmt.Fprintf(&b, "<text x=%.1f y=%d text-anchor=middle>%d</text>", x(float64(i)), padT+plotH+16, n)
	}
	fmt.Fprintf(&b, "<text x=%d y=%d text-anchor=middle>calls in flight</text>", padL+plotW/2, padT+plotH+32)
	for si, s := range ss {
		// Series side by side within a level, so that whiskers do not hide
		// each other.
		off := (float64(si) - float64(len(ss)-1)/2) * 6
		var path []string
		for _, p := range s.points {
			px := x(p.x) + off
			path = append(path, fmt.Sprintf("%.1f,%.1f", px, y(p.y)))
			fmt.Fprintf(&b, "<line x1=%.1f x2=%.1f y1=%.1f y2=%.1f stroke=\"%s\"/>", px, px, y(p.lo), y(p.hi), s.color)
			fmt.Fprintf(&b, "<circle cx=%.1f cy=%.1f r=3 fill=\"%s\"><title>%s: %.0f calls/s (%.0f–%.0f)</title></circle>",
				px, y(p.y), s.color, esc(s.name), p.y, p.lo, p.hi)
		}
		fmt.Fprintf(&b, "<polyline points=\"%s\" fill=none stroke=\"%s\" stroke-width=2/>",
			strings.Join(path, " "), s.color)
	}
	legend(&b, ss)
	endFrame(&b)
	return b.String()
}

// tail maps a quantile to the x axis of a latency chart: 0 at the start,
// one unit per nine (90%, 99%, 99.9%), so that the tail gets the room.
func tail(q float64) float64 { return -math.Log10(1 - q) }

// latencyChart draws the latency distribution of one workload at one
// level of concurrency, one line per stack, all rounds together.
func (rep *Report) latencyChart(workload string, inFlight int) string {
	const maxTail = 3.3 // 99.95%
	var ss []series
	yMax := 0.0
	for _, r := range rep.Results {
		if r.Kind != KindUnary || r.Params["workload"] != workload ||
			r.Params["concurrency"] != strconv.Itoa(inFlight) || len(r.Latency) == 0 {
			continue
		}
		s := series{name: r.Case, color: rep.color(r.Case)}
		for _, q := range r.Latency {
			if q.Q >= 1 || tail(q.Q) > maxTail+1e-9 {
				continue
			}
			s.points = append(s.points, point{x: tail(q.Q), y: q.Ms})
			yMax = max(yMax, q.Ms)
		}
		ss = append(ss, s)
	}
	if len(ss) == 0 {
		return ""
	}
	var b strings.Builder
	y := frame(&b, fmt.Sprintf("Latency distribution — %s, %d in flight", workload, inFlight), "latency ms", yMax)
	x := func(t float64) float64 { return padL + t/maxTail*plotW }
	for _, t := range []struct {
		q     float64
		label string
	}{{0, "0%"}, {0.5, "50%"}, {0.9, "90%"}, {0.99, "99%"}, {0.999, "99.9%"}} {
		fmt.Fprintf(&b, "<line x1=%.1f x2=%.1f y1=%d y2=%d stroke=\"#e8e8e8\"/>", x(tail(t.q)), x(tail(t.q)), padT, padT+plotH)
		fmt.Fprintf(&b, "<text x=%.1f y=%d text-anchor=middle>%s</text>", x(tail(t.q)), padT+plotH+16, t.label)
	}
	fmt.Fprintf(&b, "<text x=%d y=%d text-anchor=middle>percentile of calls</text>", padL+plotW/2, padT+plotH+32)
	for _, s := range ss {
		var path []string
		for _, p := range s.points {
			path = append(path, fmt.Sprintf("%.1f,%.1f", x(p.x), y(p.y)))
		}
		fmt.Fprintf(&b, "<polyline points=\"%s\" fill=none stroke=\"%s\" stroke-width=2><title>%s</title></polyline>",
			strings.Join(path, " "), s.color, esc(s.name))
	}
	legend(&b, ss)
	endFrame(&b)
	return b.String()
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
			return shortKey[r.Params["key"]] + " " + shortKX[r.Params["kx"]] + " " + r.Params["mode"]
		})
}

// barChart draws one bar per result of kind, grouped by the label group
// returns (an empty group leaves the result out), one colour per case.
func (rep *Report) barChart(kind Kind, title, metric, yLabel string, group func(Result) string) string {
	type bar struct {
		r Result
		s Stat
	}
	var (
		groups []string
		cases  []string
		bars   = map[string][]bar{}
		yMax   float64
	)
	for _, r := range rep.Results {
		st, ok := r.Metrics[metric]
		g := group(r)
		if r.Kind != kind || !ok || len(st.Values) == 0 || g == "" {
			continue
		}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
		if !slices.Contains(cases, r.Case) {
			cases = append(cases, r.Case)
		}
		bars[g] = append(bars[g], bar{r, st})
		yMax = max(yMax, st.Max)
	}
	if len(groups) == 0 {
		return ""
	}
	var b strings.Builder
	y := frame(&b, title, yLabel, yMax)
	groupW := float64(plotW) / float64(len(groups))
	barW := groupW * (1 - barGroupGap) / float64(len(cases))
	for gi, g := range groups {
		gx := padL + groupW*float64(gi) + groupW*barGroupGap/2
		// Bars of a group sit side by side, centred in the group.
		gx += barW * float64(len(cases)-len(bars[g])) / 2
		for ci, br := range bars[g] {
			bx := gx + barW*float64(ci)
			top := y(max(br.s.Median, 0))
			fmt.Fprintf(&b, "<rect x=%.1f y=%.1f width=%.1f height=%.1f fill=\"%s\"><title>%s %s: %s %s "+
				"(%s–%s)</title></rect>", bx, top, math.Max(barW-2, 1), y(0)-top, rep.color(br.r.Case),
				esc(br.r.Case), esc(g), trimFloat(br.s.Median), esc(yLabel), trimFloat(br.s.Min), trimFloat(br.s.Max))
			cx := bx + (barW-2)/2
			fmt.Fprintf(&b, "<line x1=%.1f x2=%.1f y1=%.1f y2=%.1f stroke=\"#333\"/>",
				cx, cx, y(max(br.s.Min, 0)), y(max(br.s.Max, 0)))
			fmt.Fprintf(&b, "<line x1=%.1f x2=%.1f y1=%.1f y2=%.1f stroke=\"#333\"/>",
				cx-whiskerHalfWide, cx+whiskerHalfWide, y(max(br.s.Max, 0)), y(max(br.s.Max, 0)))
		}
		lines := strings.Fields(g)
		for li, l := range lines {
			fmt.Fprintf(&b, "<text x=%.1f y=%d text-anchor=middle>%s</text>",
				padL+groupW*(float64(gi)+0.5), padT+plotH+14+li*12, esc(l))
		}
	}
	var ss []series
	for _, c := range cases {
		ss = append(ss, series{name: c, color: rep.color(c)})
	}
	legend(&b, ss)
	endFrame(&b)
	return b.String()
}
