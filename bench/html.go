package bench

import (
	"fmt"
	"html"
	"io"
	"slices"
	"strings"
)

// palette colours the series of the charts, by order of first
// appearance; readable by most colour-blind readers.
var palette = []string{"#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377",
	"#332288", "#999933", "#882255", "#bbbbbb"}

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
table.wrap td,table.wrap th{white-space:normal;text-align:left}
.met{color:#1a7f37;font-weight:600}.missed{color:#cf222e;font-weight:600}.skipped{color:#777}
.note{color:#555}.small{font-size:12px;color:#555}
svg text{font:11px system-ui,sans-serif;fill:#333}
</style></head><body>
`)
	fmt.Fprintf(&b, "<h1>moat bench</h1><p class=\"small\">%s · %s %s/%s · %d CPUs, GOMAXPROCS %d · "+
		"%d rounds of %s per measurement%s · %.0f s · figures are medians over the rounds, "+
		"whiskers and ± the range</p>\n",
		esc(rep.Started.Format("2006-01-02 15:04:05 MST")), esc(rep.Host.GoVersion), rep.Host.OS,
		rep.Host.Arch, rep.Host.CPUs, rep.Host.GOMAXPROCS, rep.Settings.Repeats,
		esc(rep.Settings.Duration), map[bool]string{true: " (quick smoke run)"}[rep.Settings.Quick],
		rep.ElapsedSeconds)
	rep.htmlBudgets(&b)
	rep.htmlStacks(&b)

	var unary strings.Builder
	for _, wl := range rep.Settings.Workloads {
		unary.WriteString(rep.throughputChart(wl))
	}
	for _, wl := range rep.Settings.Workloads {
		for _, c := range rep.Settings.Concurrency {
			unary.WriteString(rep.latencyChart(wl, c))
		}
	}
	if unary.Len() > 0 {
		b.WriteString("<h2>Unary calls</h2><div class=\"grid\">\n" + unary.String() + "</div>\n")
	}
	b.WriteString("<h2>Handshakes, streaming, interceptors, cold start</h2>" +
		"<div class=\"grid\">\n")
	b.WriteString(rep.handshakeChart())
	b.WriteString(rep.barChart(KindStream, "Server streaming of 64 KiB messages", "mb_per_s", "MB/s",
		func(r Result) string { return r.Case }, 0))
	b.WriteString(rep.barChart(KindInterceptor, "Sealer on a message without sensitive fields, "+
		"cost per call", "cost_ns", "ns", func(r Result) string {
		if r.Case != InterceptorSealer || r.Params["message"] != "echo" {
			return ""
		}
		return r.Params["side"]
	}, rep.limit(KindInterceptor, InterceptorSealer, "cost_ns")))
	b.WriteString(rep.barChart(KindInterceptor, "Sealing a 1 KiB SECRET field, and the call log, "+
		"cost per call", "cost_ns", "ns", func(r Result) string {
		if r.Case == InterceptorNone || (r.Case == InterceptorSealer && r.Params["message"] == "echo") {
			return ""
		}
		return r.Case + " " + r.Params["side"] + " " + r.Params["message"]
	}, 0))
	b.WriteString(rep.barChart(KindColdStart, "Cold start: NewService to first call", "total_ms", "ms",
		func(r Result) string { return r.Params["registry"] }, 0))
	b.WriteString("</div>\n")
	rep.htmlTables(&b)
	if len(rep.Notes) > 0 {
		b.WriteString("<h2>Notes</h2><ul>")
		for _, n := range rep.Notes {
			fmt.Fprintf(&b, "<li class=\"note\">%s</li>", esc(n))
		}
		b.WriteString("</ul>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return html.EscapeString(s) }

// limit returns the max of the first budget on a metric of a case, or 0.
func (rep *Report) limit(kind Kind, name, metric string) float64 {
	for _, l := range rep.Budgets {
		b := l.Budget
		if b.Kind == kind && b.Case == name && b.Metric == metric && b.Baseline == "" && b.Max != nil {
			return *b.Max
		}
	}
	return 0
}

func (rep *Report) htmlBudgets(b *strings.Builder) {
	if len(rep.Budgets) == 0 {
		return
	}
	b.WriteString("<h2>Budgets</h2><table class=\"wrap\"><tr><th>status</th><th>budget</th>" +
		"<th>result</th><th>limit</th><th>median</th><th>range over the rounds</th></tr>\n")
	for _, l := range rep.Budgets {
		val, rng := "", l.Note
		if l.Status != BudgetSkipped {
			val = trimFloat(l.Value)
			rng = trimFloat(l.Min) + " – " + trimFloat(l.Max)
		}
		fmt.Fprintf(b, "<tr><td class=\"%s\">%s</td><td>%s</td><td>%s</td><td>%s %s</td>"+
			"<td>%s</td><td>%s</td></tr>\n", l.Status, l.Status, esc(l.Budget.Name),
			esc(paramString(l.Params)), esc(l.Budget.Metric), esc(l.Budget.Limit()), val, esc(rng))
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
		fmt.Fprintf(b, "<tr><td><b style=\"color:%s\">%s</b></td>"+
			"<td style=\"text-align:left\">%s</td></tr>",
			rep.color(s.Name), esc(s.Name), esc(desc))
	}
	b.WriteString("</table>\n")
}

func (rep *Report) htmlTables(b *strings.Builder) {
	b.WriteString("<h2>All results</h2>\n")
	for _, sec := range sections {
		rows := rep.resultsOf(sec.kind)
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
			fmt.Fprintf(b, "<td class=\"note\" style=\"text-align:left;white-space:normal\">"+
				"%s</td></tr>\n", esc(note))
		}
		b.WriteString("</table>\n")
	}
}

// seriesOrder fixes the colours of the built-in series, so that they are
// the same from one report to the next.
var seriesOrder = []string{StackPlaintext, StackTLS, StackMoat, StackMoatSealed, StackMoatFields,
	ImplBare, InterceptorSealer, InterceptorLogger, InterceptorNone}

// color returns the colour of a series name, the same in every chart.
func (rep *Report) color(name string) string {
	names := slices.Clone(seriesOrder)
	for _, s := range rep.Stacks {
		if !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
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
