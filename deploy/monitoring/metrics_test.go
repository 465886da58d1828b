package monitoring_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// exportedSeries returns every series name hdns can export: the names in
// the prometheus.*Opts literals of the module's non-test Go sources (a
// histogram as its _bucket, _sum and _count series), the Go and process
// collectors' when the sources create them, and up, which Prometheus
// writes for every target it scrapes.
//
// The sources, not a running hdns's /metrics, are the inventory: a vector
// shows no series until its first labelled event (a SERVFAIL, a source
// error, a forwarded question), and the load source's and per-endpoint
// metrics exist only with their flags.
func exportedSeries(t *testing.T) map[string]bool {
	t.Helper()
	series := map[string]bool{"up": true}
	root := moduleRoot(t)
	uses := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// test/ holds the e2e and benchmark suites, not hdns.
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || path == filepath.Join(root, "test")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if kind, ok := optsKind(n.Type); ok {
					if name := nameField(n); name != "" {
						addSeries(series, name, kind)
					}
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "collectors" {
					uses[n.Sel.Name] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("read the module's sources: %v", err)
	}
	addCollectors(t, series, uses)
	return series
}

// addCollectors adds the series of the client library's Go and process
// collectors, with their default options, when the sources create them.
func addCollectors(t *testing.T, series map[string]bool, uses map[string]bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if uses["NewGoCollector"] {
		reg.MustRegister(collectors.NewGoCollector())
	}
	if uses["NewProcessCollector"] {
		reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather the Go and process collectors: %v", err)
	}
	for _, mf := range families {
		kind := map[string]string{"HISTOGRAM": "Histogram", "SUMMARY": "Summary"}[mf.GetType().String()]
		addSeries(series, mf.GetName(), kind)
	}
}

// optsKind reports whether typ is prometheus.<Kind>Opts, and which kind.
func optsKind(typ ast.Expr) (string, bool) {
	sel, ok := typ.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
		return "", false
	}
	return strings.CutSuffix(sel.Sel.Name, "Opts")
}

// nameField returns the string literal of lit's Name field, or "".
func nameField(lit *ast.CompositeLit) string {
	for _, elt := range lit.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		key, ok := kv.Key.(*ast.Ident)
		value, isLit := kv.Value.(*ast.BasicLit)
		if !ok || key.Name != "Name" || !isLit || value.Kind != token.STRING {
			continue
		}
		name, err := strconv.Unquote(value.Value)
		if err == nil {
			return name
		}
	}
	return ""
}

// addSeries adds the series names a metric of kind (Counter, Gauge,
// Histogram, Summary) exposes.
func addSeries(series map[string]bool, name, kind string) {
	switch kind {
	case "Histogram":
		series[name+"_bucket"] = true
	case "Summary":
		series[name] = true
	default:
		series[name] = true
		return
	}
	series[name+"_sum"], series[name+"_count"] = true, true
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// checkNames fails t for every metric expr selects that hdns does not
// export; where says which expression it is.
func checkNames(t *testing.T, exported map[string]bool, where, expr string) {
	t.Helper()
	names, err := metricNames(expr)
	if err != nil {
		t.Errorf("%s: %v in %s", where, err, expr)
	}
	if len(names) == 0 && err == nil {
		t.Errorf("%s selects no metric: %s", where, expr)
	}
	for _, name := range names {
		if !exported[name] {
			t.Errorf("%s selects %s, which hdns does not export (histograms are read as _bucket, _sum, _count): %s", where, name, expr)
		}
	}
}

var (
	// notMetrics are the aggregation operators and keywords that read as
	// identifiers without naming a metric.
	notMetrics = wordSet("sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio " +
		"and or unless bool offset atan2 inf nan by without on ignoring group_left group_right")
	// labelLists are the keywords a parenthesised list of label names
	// follows.
	labelLists = wordSet("by without on ignoring group_left group_right")
)

func wordSet(words string) map[string]bool {
	set := map[string]bool{}
	for _, w := range strings.Fields(words) {
		set[w] = true
	}
	return set
}

// metricNames returns the metric names a PromQL expression selects: the
// identifiers outside strings, label matchers ({...}), ranges ([...]) and
// label lists that are neither function calls nor keywords. It does not
// read {__name__="..."} selectors, and reports a $ outside a string (a
// Grafana variable not substituted).
func metricNames(expr string) ([]string, error) {
	var names []string
	for i := 0; i < len(expr); {
		c := expr[i]
		var err error
		switch {
		case c == '"' || c == '\'' || c == '`':
			i, err = skipString(expr, i)
		case c == '{':
			if strings.Contains(expr[i:], "__name__") {
				return nil, fmt.Errorf("a __name__ matcher, which this check does not read")
			}
			i, err = skipPast(expr, i, '}')
		case c == '[':
			i, err = skipPast(expr, i, ']')
		case c == '$':
			return nil, fmt.Errorf("a $ outside a string (a Grafana variable the test does not substitute)")
		case isIdentStart(c):
			j := i
			for j < len(expr) && (isIdentStart(expr[j]) || isDigit(expr[j])) {
				j++
			}
			word, next := expr[i:j], strings.TrimLeft(expr[j:], " \t\n")
			switch {
			case labelLists[word] && strings.HasPrefix(next, "("):
				j, err = skipPast(expr, len(expr)-len(next), ')')
			case notMetrics[word] || strings.HasPrefix(next, "("):
			default:
				names = append(names, word)
			}
			i = j
		case isDigit(c) || c == '.':
			// A number or a duration: 0.99, 1e-6, 5m.
			for i < len(expr) && (isIdentStart(expr[i]) || isDigit(expr[i]) || expr[i] == '.') {
				i++
			}
		default:
			i++
		}
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// skipString returns the index after the string that opens at i.
func skipString(s string, i int) (int, error) {
	quote := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && quote != '`':
			j++
		case s[j] == quote:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("a string opened at offset %d is not closed", i)
}

// skipPast returns the index after the first close at or after i,
// skipping strings.
func skipPast(s string, i int, close byte) (int, error) {
	for j := i; j < len(s); j++ {
		switch s[j] {
		case close:
			return j + 1, nil
		case '"', '\'', '`':
			end, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		}
	}
	return 0, fmt.Errorf("%q opened at offset %d is not closed", close, i)
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{expr: `up{job="hdns"} == 0`, want: []string{"up"}},
		{expr: `sum by (le, job) (rate(a_bucket{x=~"$instance", y="}"}[5m])) / on(job) group_left(le) b offset 5m > 1e-6`, want: []string{"a_bucket", "b"}},
		{expr: `sum(rate(a[5m])) > $threshold`, want: nil},
		{expr: `topk(20, sum without (service) (c:rate5m)) and d unless bool 0.99`, want: []string{"c:rate5m", "d"}},
		{expr: `label_replace(e, "dst", "$1", "src", "(.*)")`, want: []string{"e"}},
	} {
		got, err := metricNames(tc.expr)
		if tc.want == nil {
			if err == nil {
				t.Errorf("metricNames(%s) = %v, want an error", tc.expr, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%s) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
}

func TestExportedSeries(t *testing.T) {
	series := exportedSeries(t)
	for _, name := range []string{"hdns_dns_requests_total", "hdns_zone_build_duration_seconds_bucket", "hdns_zone_build_duration_seconds_count", "process_resident_memory_bytes", "go_goroutines", "up"} {
		if !series[name] {
			t.Errorf("the inventory lacks %s", name)
		}
	}
	if series["hdns_zone_build_duration_seconds"] {
		t.Error("the inventory has a histogram's bare name, which no series carries")
	}
}
