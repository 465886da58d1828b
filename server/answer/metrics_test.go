package answer

import (
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
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var counted []map[string]string
	for _, f := range families {
		if f.GetName() != "hdns_dns_requests_total" {
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
	if len(counted) != 1 || counted[0]["type"] != "AAAA" || counted[0]["rcode"] != "BADVERS" {
		t.Errorf("counted %v, want one reply of type AAAA, rcode BADVERS", counted)
	}
}
