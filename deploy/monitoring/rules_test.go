package monitoring_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/hdns-dev/hdns/internal/promtest"
)

var update = flag.Bool("update", false, "rewrite prometheusrule.yaml's spec from hdns.rules.yaml")

const (
	ruleFile           = "hdns.rules.yaml"
	ruleTestFile       = "hdns.rules.test.yaml"
	prometheusRuleFile = "prometheusrule.yaml"
)

type rules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

type ruleTests struct {
	Tests []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func readFile(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readYAML(t *testing.T, file string, into any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, file), into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// promtool runs promtool with args in this directory and fails t with its
// output when it fails.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtest.Promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
}

func TestRulesPassPromtool(t *testing.T) {
	promtool(t, "check", "rules", ruleFile)
	promtool(t, "test", "rules", ruleTestFile)
}

// TestPrometheusRuleCarriesRuleFile holds the PrometheusRule's spec to the
// plain rule file's text from its groups: line on, indented under spec:,
// so that both carry the same rules and their comments.
func TestPrometheusRuleCarriesRuleFile(t *testing.T) {
	plain, wrapped := readFile(t, ruleFile), readFile(t, prometheusRuleFile)
	start := bytes.Index(plain, []byte("\ngroups:\n"))
	head, _, found := bytes.Cut(wrapped, []byte("\nspec:\n"))
	if start < 0 || !found {
		t.Fatalf("%s needs a groups: line and %s a spec: line", ruleFile, prometheusRuleFile)
	}
	// A new slice: appending to head would write over wrapped.
	want := append(bytes.Clone(head), "\nspec:\n"...)
	for _, line := range bytes.SplitAfter(plain[start+1:], []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			want = append(want, "  "...)
		}
		want = append(want, line...)
	}
	if bytes.Equal(wrapped, want) {
		return
	}
	if *update {
		if err := os.WriteFile(prometheusRuleFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's spec differs from %s's groups; run go test ./deploy/monitoring -run %s -update", prometheusRuleFile, ruleFile, t.Name())
}

// TestAlertsAreComplete asks of every alert what its receiver needs (a
// duration, a severity, a summary and a description) and what keeps it
// honest: metrics hdns exports, and a promtool unit test where it fires
// and one where it does not.
func TestAlertsAreComplete(t *testing.T) {
	var file rules
	readYAML(t, ruleFile, &file)
	var tests ruleTests
	readYAML(t, ruleTestFile, &tests)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				quiet[at.Alertname] = true
			}
		}
	}
	exported := exportedSeries(t)
	alerts := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			checkNames(t, exported, r.Alert, r.Expr)
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			if r.For == "" {
				t.Errorf("%s has no for: one bad evaluation would page", r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s needs a summary and a description annotation", r.Alert)
			}
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: %s tests it firing: %v, not firing: %v; want both", r.Alert, ruleTestFile, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if alerts == 0 {
		t.Errorf("%s has no alerts", ruleFile)
	}
}
