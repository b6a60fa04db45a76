package stack_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// dashboardFile is the Grafana dashboard committed for the stack.
const dashboardFile = "../../deploy/grafana/dashboards/shopbus.json"

// dashboardVariable is the dashboard's Prometheus data source variable,
// which every query must use so that the dashboard works when provisioned.
const dashboardVariable = "datasource"

// grafanaDashboard is the part of Grafana's dashboard JSON model the tests
// read.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
}

type grafanaVariable struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Query any    `json:"query"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	Targets    []grafanaTarget    `json:"targets"`
	// Panels are a collapsed row's panels.
	Panels []grafanaPanel `json:"panels"`
}

type grafanaTarget struct {
	RefID      string             `json:"refId"`
	Expr       string             `json:"expr"`
	Datasource *grafanaDatasource `json:"datasource"`
}

// grafanaDatasource is a data source reference: {"type", "uid"}, or the
// legacy plain name, kept as UID.
type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func (d *grafanaDatasource) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err == nil {
		*d = grafanaDatasource{UID: name}
		return nil
	}
	type plain grafanaDatasource
	return json.Unmarshal(b, (*plain)(d))
}

// usesVariable reports whether d refers to the dashboard's data source
// variable ("${datasource}" or "$datasource").
func (d *grafanaDatasource) usesVariable() bool {
	return d != nil && (d.UID == "${"+dashboardVariable+"}" || d.UID == "$"+dashboardVariable)
}

// readDashboard parses the committed dashboard.
func readDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// dashboardPanels returns every panel of d, rows and the panels nested in
// collapsed rows included, in order.
func dashboardPanels(d grafanaDashboard) []grafanaPanel {
	var out []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// dashboardMetrics returns the sorted, de-duplicated names of the metrics
// the committed dashboard's PromQL queries reference, as written (a
// histogram's series keep their _bucket, _sum or _count suffix).
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, p := range dashboardPanels(readDashboard(t)) {
		for _, tg := range p.Targets {
			names = append(names, promqlMetrics(tg.Expr)...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// promqlNonMetrics are the identifiers of PromQL that are not metric
// names: aggregation operators, keywords, binary operators and functions
// (any identifier followed by "(" is taken for a function anyway). PromQL
// keywords are case-insensitive; they are compared lower-cased.
var promqlNonMetrics = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`
		sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
		by without on ignoring group_left group_right bool offset start end
		and or unless atan2 inf nan
		abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time
		ceil changes clamp clamp_max clamp_min cos cosh count_over_time
		day_of_month day_of_week day_of_year days_in_month deg delta deriv
		double_exponential_smoothing exp first_over_time floor
		histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev
		histogram_stdvar histogram_sum holt_winters hour idelta increase info irate
		label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time
		min_over_time minute month pi predict_linear present_over_time quantile_over_time
		rad rate resets round scalar sgn sin sinh sort sort_by_label sort_by_label_desc
		sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time
		timestamp vector year
	`) {
		promqlNonMetrics[w] = true
	}
}

// promqlToken is a lexical token of a PromQL expression.
type promqlToken struct {
	kind byte // 'i' identifier, 's' string, 'n' number or duration, 'v' Grafana variable, else the punctuation byte itself
	text string
}

// promqlTokens splits expr into identifiers, string literals (unquoted
// text), numbers and durations, Grafana variables ($x, ${x}) and
// punctuation; it drops white space and # comments. Operators of two bytes
// come out as two tokens, which is all the extractor needs.
func promqlTokens(expr string) []promqlToken {
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }
	var toks []promqlToken
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			var s strings.Builder
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' && j+1 < len(expr) {
					j++
				}
				s.WriteByte(expr[j])
				j++
			}
			toks = append(toks, promqlToken{'s', s.String()})
			i = j + 1
		case c == '$':
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				for j < len(expr) && expr[j] != '}' {
					j++
				}
				j++
			} else {
				for j < len(expr) && isIdent(expr[j]) {
					j++
				}
			}
			j = min(j, len(expr))
			toks = append(toks, promqlToken{'v', expr[i:j]})
			i = j
		case '0' <= c && c <= '9' || c == '.' && i+1 < len(expr) && '0' <= expr[i+1] && expr[i+1] <= '9':
			// 1, 0.5, 1e3, 0x1f, 5m, 1h30m: digits run into letters.
			j := i + 1
			for j < len(expr) && (isIdent(expr[j]) || expr[j] == '.') {
				j++
			}
			toks = append(toks, promqlToken{'n', expr[i:j]})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			toks = append(toks, promqlToken{'i', expr[i:j]})
			i = j
		default:
			toks = append(toks, promqlToken{c, string(c)})
			i++
		}
	}
	return toks
}

// promqlMetrics returns the metric names expr references, in order of
// first appearance. It skips string literals, label matcher blocks {...}
// (but takes the name of {__name__="x"} and of Prometheus 3's {"x"}),
// range, subquery and Grafana [[var]] selectors [...], the label lists of
// by, without, on, ignoring, group_left and group_right, Grafana variables,
// numbers and durations, functions (identifiers followed by "("), and
// PromQL's operators and keywords.
func promqlMetrics(expr string) []string {
	toks := promqlTokens(expr)
	var names []string
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch tk.kind {
		case '{':
			// A matcher block: label op "value" pairs, or a quoted name.
			j := i + 1
			for ; j < len(toks) && toks[j].kind != '}'; j++ {
				switch {
				case toks[j].kind == 'i' && toks[j].text == "__name__" && j+2 < len(toks) &&
					toks[j+1].kind == '=' && toks[j+2].kind == 's':
					add(toks[j+2].text)
				case toks[j].kind == 's' && (toks[j-1].kind == '{' || toks[j-1].kind == ',') &&
					j+1 < len(toks) && (toks[j+1].kind == ',' || toks[j+1].kind == '}'):
					add(toks[j].text)
				}
			}
			i = j
		case '[':
			depth := 0
			for ; i < len(toks); i++ {
				switch toks[i].kind {
				case '[':
					depth++
				case ']':
					depth--
				}
				if depth == 0 {
					break
				}
			}
		case 'i':
			lower := strings.ToLower(tk.text)
			called := i+1 < len(toks) && toks[i+1].kind == '('
			switch {
			case called && slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, lower):
				// A label list: skip it.
				for i++; i < len(toks) && toks[i].kind != ')'; i++ {
				}
			case called, promqlNonMetrics[lower]:
				// A function, operator or keyword.
			default:
				add(tk.text)
			}
		}
	}
	return names
}

func TestDashboardQueries(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`histogram_quantile(0.99, sum by (le) (rate(foo_bucket{a="x"}[5m])))`, []string{"foo_bucket"}},
		{`sum(rate(a_total[1m])) / sum(rate(b_total[1m]))`, []string{"a_total", "b_total"}},
		{`max by (consumer) (x{partition="all"})`, []string{"x"}},
		{`x`, []string{"x"}},
		{`up == 1`, []string{"up"}},
		{`sum(rate(a_total[$__rate_interval])) by (job)`, []string{"a_total"}},
		{`sum without (instance, pod) (rate(a_total{job=~"$job", x!="sum(rate(nope[1m]))"}[${__rate_interval}] offset 1h30m))`, []string{"a_total"}},
		{`rate(a_total[5m] offset -5m) * on (instance) group_left (version) b_info`, []string{"a_total", "b_info"}},
		{`a / ignoring(code) group_left b`, []string{"a", "b"}},
		{`a > bool 0.5e-3 and b or c unless d`, []string{"a", "b", "c", "d"}},
		{`SUM BY (le) (rate(a_bucket[1m]))`, []string{"a_bucket"}},
		{`sum (rate (a_total [1m]))`, []string{"a_total"}},
		{`max_over_time(rate(a_total[1m])[10m:30s])`, []string{"a_total"}},
		{`job:http_requests:rate5m{job="api"} @ end()`, []string{"job:http_requests:rate5m"}},
		{`{__name__="a_total", job="x"} + {"b.total"} + {"c.total", job="y"} - {job="z"}`, []string{"a_total", "b.total", "c.total"}},
		{`label_replace(a, "dst", "$1", "src", "(.*)") + count_values("v", b) + topk(3, c) + quantile(0.9, d)`, []string{"a", "b", "c", "d"}},
		{`clamp_min(a, 0) + absent(b) + vector(1) + scalar(c) + time() - timestamp(d)`, []string{"a", "b", "c", "d"}},
		{"a # a comment naming not_a_metric\n+ b", []string{"a", "b"}},
		{`1 + 2 * Inf - NaN`, nil},
		{`a{x="\"}"} + b{y='}'}`, []string{"a", "b"}},
	} {
		if got := promqlMetrics(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("promqlMetrics(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}

	d := readDashboard(t)
	if d.UID != "shopbus" || d.Title != "shopbus" {
		t.Errorf("dashboard uid %q, title %q; want shopbus, shopbus", d.UID, d.Title)
	}
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion %d, want 39", d.SchemaVersion)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v grafanaVariable) bool {
		return v.Name == dashboardVariable && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Errorf("dashboard has no %q variable of type datasource querying prometheus", dashboardVariable)
	}

	withTargets := 0
	ids := map[int]string{}
	for _, p := range dashboardPanels(d) {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if strings.TrimSpace(p.Title) == "" {
			t.Errorf("%s (%s) has no title", name, p.Type)
		}
		if other, ok := ids[p.ID]; ok {
			t.Errorf("%s has the id of %s", name, other)
		}
		ids[p.ID] = name
		if p.Type == "row" {
			if len(p.Targets) > 0 {
				t.Errorf("%s: a row with targets", name)
			}
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s has no targets", name)
			continue
		}
		withTargets++
		if p.Datasource != nil && !p.Datasource.usesVariable() {
			t.Errorf("%s: data source %+v, want the $%s variable", name, *p.Datasource, dashboardVariable)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s, target %s: empty expr", name, tg.RefID)
				continue
			}
			ds := tg.Datasource
			if ds == nil {
				ds = p.Datasource
			}
			if !ds.usesVariable() {
				t.Errorf("%s, target %s: data source %+v, want the $%s variable", name, tg.RefID, ds, dashboardVariable)
			}
			if ds != nil && ds.Type != "" && ds.Type != "prometheus" {
				t.Errorf("%s, target %s: data source type %q, want prometheus", name, tg.RefID, ds.Type)
			}
			if len(promqlMetrics(tg.Expr)) == 0 {
				t.Errorf("%s, target %s: %q references no metric", name, tg.RefID, tg.Expr)
			}
		}
	}
	if withTargets < 8 {
		t.Errorf("%d panels with queries, want at least 8", withTargets)
	}
	t.Logf("dashboard metrics: %q", dashboardMetrics(t))
}
