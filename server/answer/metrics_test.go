package answer

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hdns-dev/hdns/server/internal/fixture"
)

// TestBadVersKeepsQuestionAndIsCounted: a query of an unknown EDNS
// version gets BADVERS with its question, and is counted under its
// question's type as BADVERS (miekg/dns names rcode 16 BADSIG).
func TestBadVersKeepsQuestionAndIsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := responderOf(fixture.Cluster(t))
	s.Metrics = NewMetrics(reg)
	m := fixture.Query("web.awx.svc.cluster.local.", dns.TypeAAAA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r := exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeBadVers || len(r.Question) != 1 || r.Question[0] != m.Question[0] {
		t.Errorf("EDNS version 1: rcode %s, question %v; want BADVERS with %v", dns.RcodeToString[r.Rcode], r.Question, m.Question[0])
	}
	counted := countedLabels(t, reg, "hdns_dns_requests_total")
	if len(counted) != 1 || counted[0]["type"] != "AAAA" || counted[0]["rcode"] != "BADVERS" {
		t.Errorf("counted %v, want one reply of type AAAA, rcode BADVERS", counted)
	}
}

// TestAnswerLocalityCounted: an answer of a Service whose policy reads the
// client's place is counted by where its first address runs, seen from
// the client; other answers are not counted.
func TestAnswerLocalityCounted(t *testing.T) {
	for _, tc := range []struct {
		name, service, client string
		want                  string // "": nothing counted
	}{
		{name: "prefer-node, on the client's node", service: "nodal", client: "10.7.1.0", want: "same-node"},
		{name: "prefer-zone, from a node without endpoints", service: "zonal", client: "10.7.4.0", want: "same-zone"},
		{name: "prefer-node, from a node without endpoints", service: "nodal", client: "10.7.4.0", want: "same-zone"},
		{name: "a zone without endpoints", service: "zonal", client: "10.7.9.0", want: "other-zone"},
		{name: "from zone-b, whose pod is first", service: "close", client: "10.7.8.5", want: "same-node"},
		{name: "unknown client", service: "zonal", client: "198.51.100.0", want: "unknown"},
		{name: "a Service without locality", service: "plain", client: "10.7.1.0"},
		{name: "no such Service", service: "nope", client: "10.7.1.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			r := scopeCluster(t)
			r.Metrics = NewMetrics(reg)
			exchange(t, r, ecsQuery(tc.service+".loc.svc.cluster.local.", netip.MustParseAddr(tc.client), 32), "udp")
			got := countedLabels(t, reg, "hdns_dns_answer_locality_total")
			if tc.want == "" && len(got) != 0 || tc.want != "" && (len(got) != 1 || got[0]["locality"] != tc.want) {
				t.Errorf("counted %v, want one answer of locality %q", got, tc.want)
			}
		})
	}
}

// countedLabels returns the label sets of the counters of the metric
// name that counted something.
func countedLabels(t *testing.T, reg *prometheus.Registry, name string) []map[string]string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var counted []map[string]string
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, c := range f.GetMetric() {
			if c.GetCounter().GetValue() == 0 {
				continue
			}
			labels := map[string]string{}
			for _, l := range c.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			counted = append(counted, labels)
		}
	}
	return counted
}
