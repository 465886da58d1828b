package monitoring_test

import (
	"slices"
	"testing"
)

// monitor is what the tests read of a ServiceMonitor or a PodMonitor.
type monitor struct {
	Metadata struct {
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		JobLabel string `json:"jobLabel"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints           []endpoint `json:"endpoints"`
		PodMetricsEndpoints []endpoint `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type endpoint struct {
	Port string `json:"port"`
}

// scraped is what a monitor must find: the labels of the object it
// selects, that object's namespace and the names of its ports.
type scraped struct {
	labels    map[string]string
	namespace string
	ports     []string
}

// TestMonitorsSelectHDNS holds servicemonitor.yaml to the base's Service
// and podmonitor.yaml to its Deployment's pods: they select them, in their
// namespace, by a port they name, and take the job name "hdns" the rules
// expect from their labels.
func TestMonitorsSelectHDNS(t *testing.T) {
	type port struct {
		Name string `json:"name"`
	}
	var service struct {
		Metadata struct {
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Ports []port `json:"ports"`
		} `json:"spec"`
	}
	readYAML(t, "../service.yaml", &service)
	var deployment struct {
		Metadata struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			Template struct {
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
				Spec struct {
					Containers []struct {
						Ports []port `json:"ports"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	readYAML(t, "../deployment.yaml", &deployment)

	names := func(ports []port) (n []string) {
		for _, p := range ports {
			n = append(n, p.Name)
		}
		return n
	}
	svc := scraped{labels: service.Metadata.Labels, namespace: service.Metadata.Namespace, ports: names(service.Spec.Ports)}
	pods := scraped{labels: deployment.Spec.Template.Metadata.Labels, namespace: deployment.Metadata.Namespace}
	for _, c := range deployment.Spec.Template.Spec.Containers {
		pods.ports = append(pods.ports, names(c.Ports)...)
	}

	var sm, pm monitor
	readYAML(t, "servicemonitor.yaml", &sm)
	readYAML(t, "podmonitor.yaml", &pm)
	checkMonitor(t, "servicemonitor.yaml", sm, sm.Spec.Endpoints, svc)
	checkMonitor(t, "podmonitor.yaml", pm, pm.Spec.PodMetricsEndpoints, pods)
}

func checkMonitor(t *testing.T, file string, m monitor, endpoints []endpoint, target scraped) {
	t.Helper()
	if m.Metadata.Namespace != target.namespace || !slices.Equal(m.Spec.NamespaceSelector.MatchNames, []string{target.namespace}) {
		t.Errorf("%s: namespace %q, selects namespaces %v; want %q for both", file, m.Metadata.Namespace, m.Spec.NamespaceSelector.MatchNames, target.namespace)
	}
	if len(m.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("%s selects by no label", file)
	}
	for k, v := range m.Spec.Selector.MatchLabels {
		if target.labels[k] != v {
			t.Errorf("%s selects %s=%s; the target's labels are %v", file, k, v, target.labels)
		}
	}
	if job := target.labels[m.Spec.JobLabel]; job != "hdns" {
		t.Errorf("%s: jobLabel %q gives job %q; the rules expect hdns", file, m.Spec.JobLabel, job)
	}
	if len(endpoints) == 0 {
		t.Errorf("%s scrapes no port", file)
	}
	for _, e := range endpoints {
		if !slices.Contains(target.ports, e.Port) {
			t.Errorf("%s scrapes port %q; the target's ports are %v", file, e.Port, target.ports)
		}
	}
}

// TestKustomizationListsTheBundle holds kustomization.yaml to the files
// README.md says it applies: the PrometheusRule, one monitor (two would
// scrape every replica twice) and the dashboard.
func TestKustomizationListsTheBundle(t *testing.T) {
	var k struct {
		Resources          []string `json:"resources"`
		ConfigMapGenerator []struct {
			Files []string `json:"files"`
		} `json:"configMapGenerator"`
	}
	readYAML(t, "kustomization.yaml", &k)
	monitors := 0
	for _, m := range []string{"servicemonitor.yaml", "podmonitor.yaml"} {
		if slices.Contains(k.Resources, m) {
			monitors++
		}
	}
	if monitors != 1 || !slices.Contains(k.Resources, prometheusRuleFile) {
		t.Errorf("kustomization.yaml lists %v; want %s and one of servicemonitor.yaml, podmonitor.yaml", k.Resources, prometheusRuleFile)
	}
	if len(k.ConfigMapGenerator) != 1 || !slices.Equal(k.ConfigMapGenerator[0].Files, []string{"dashboard.json"}) {
		t.Errorf("kustomization.yaml generates %+v; want one ConfigMap of dashboard.json", k.ConfigMapGenerator)
	}
}
