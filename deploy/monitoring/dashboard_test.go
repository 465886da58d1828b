package monitoring_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// grafanaIntervals stand for the interval variables Grafana substitutes
// before it sends a query; the dashboard's other variables appear only
// inside label matchers' strings.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// labelValues is the template variables' query form: a selector and a
// label name.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// TestDashboardQueries checks that every query of dashboard.json, the
// template variables' included, parses as PromQL (promtool check rules on
// the queries wrapped as recording rules) and selects only metrics hdns
// exports.
func TestDashboardQueries(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(readFile(t, "dashboard.json"), &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	queries := map[string]string{} // recording rule name → PromQL
	var collect func([]panel)
	collect = func(panels []panel) {
		for _, p := range panels {
			for _, target := range p.Targets {
				queries[fmt.Sprintf("panel_%d_%s", p.ID, target.RefID)] = grafanaIntervals.Replace(target.Expr)
			}
			collect(p.Panels)
		}
	}
	collect(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		queries["variable_"+v.Name] = m[1]
	}
	if len(queries) == 0 {
		t.Fatal("dashboard.json has no queries")
	}
	exported := exportedSeries(t)
	var file strings.Builder
	file.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for name, expr := range queries {
		checkNames(t, exported, name, expr)
		quoted, err := json.Marshal(expr) // a JSON string is a YAML double-quoted scalar
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&file, "      - record: %s\n        expr: %s\n", name, quoted)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(path, []byte(file.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", path)
}
