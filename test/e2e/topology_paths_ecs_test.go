//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// blindService selects web's pods with no policy annotation and no
// trafficDistribution: its answers do not read the client's place.
const blindService = "blind"

func (e *pathsEnv) blindName() string { return blindService + "." + pathsNS + ".svc.cluster.local." }

// ecsScope: the scope of the ECS option of each reply says how widely a
// cache may share it (docs/topology.md, "Caches and ECS"). Asked directly
// with ECS: a pod in a uniform podCIDR gets the podCIDR's length, a node
// address and an endpoint outside every podCIDR 32, an unknown range its
// source prefix, and a Service whose policy does not read the client 0.
// Through the CoreDNS with ecsRewrite, whose forward passes hdns's reply
// on unchanged, the client sees the option the rewrite sent, naming its
// own address /32, with the scope hdns gave it, whether it sent an ECS
// option of its own, none, or no EDNS at all.
func (e *pathsEnv) ecsScope(t *testing.T) {
	a := e.zones[0]
	e.awaitFor(t, e.blindName(), "blind, unknown client, direct", e.h.DNS, netip.Addr{}, netip.Prefix{}, e.all)
	pod, node := netip.PrefixFrom(a.client(1), 32), netip.PrefixFrom(a.addr, 32)
	for _, c := range []struct {
		what  string
		name  string
		ecs   netip.Prefix
		want  []string
		scope int
	}{
		{what: "pod on node-a in its uniform /24", name: e.name, ecs: pod, want: a.pods, scope: 24},
		{what: "pod on node-a2 in its uniform /24", name: e.name, ecs: netip.PrefixFrom(e.twin.client(1), 32), want: a.pods, scope: 24},
		{what: "node-a's address", name: e.name, ecs: node, want: a.pods, scope: 32},
		{what: "web's pod outside every podCIDR", name: e.name, ecs: netip.MustParsePrefix(a.pods[0] + "/32"), want: a.pods, scope: 32},
		{what: "unknown IPv4 /20", name: e.name, ecs: netip.MustParsePrefix("198.51.96.0/20"), want: e.all, scope: 20},
		{what: "unknown IPv6 /56", name: e.name, ecs: netip.MustParsePrefix("2001:db8:0:100::/56"), want: e.all, scope: 56},
		{what: "pod on node-a asking blind", name: e.blindName(), ecs: pod, want: e.all, scope: 0},
	} {
		what := fmt.Sprintf("%s, ECS %v, direct", c.what, c.ecs)
		r := e.expectFor(t, c.name, what, e.h.DNS, netip.Addr{}, c.ecs, c.want)
		checkScope(t, what, r, c.ecs, c.scope)
	}

	rewrite := net.JoinHostPort(rewriteDNS.String(), "53")
	for _, c := range []struct {
		what  string
		src   netip.Addr
		ecs   netip.Prefix
		scope int
	}{
		{what: "pod on node-a", src: a.client(0), scope: 24},
		{what: "pod on node-a with an ECS option of its own", src: a.client(0), ecs: netip.MustParsePrefix("198.51.100.0/24"), scope: 24},
		{what: "hostNetwork client on node-a", src: a.addr, scope: 32},
	} {
		what := fmt.Sprintf("%s (%v, ECS %v) via CoreDNS with rewrite", c.what, c.src, c.ecs)
		r := e.expect(t, what, rewrite, c.src, c.ecs, a.pods)
		checkScope(t, what, r, netip.PrefixFrom(c.src, 32), c.scope)
	}
	// A stub resolver without EDNS (glibc's default) gets the OPT record
	// the rewrite added to its query, option and all.
	src := a.client(2)
	what := fmt.Sprintf("pod on node-a (%v) without EDNS via CoreDNS with rewrite", src)
	m := new(dns.Msg)
	m.SetQuestion(e.name, dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second,
		Dialer: &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}}
	r, _, err := c.Exchange(m, rewrite)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if ok, got := answerOf(r, a.pods); !ok {
		t.Errorf("%s: %s, want NOERROR %v", what, got, a.pods)
	}
	checkScope(t, what, r, netip.PrefixFrom(src, 32), 24)
}

// checkScope fails t unless r carries an ECS option with ecs's family,
// source prefix length and address, and scope.
func checkScope(t *testing.T, what string, r *dns.Msg, ecs netip.Prefix, scope int) {
	t.Helper()
	if r == nil {
		return
	}
	ok, got := echoesECS(r, ecs)
	if o := echoedECS(r); !ok || o == nil || int(o.SourceScope) != scope {
		t.Errorf("%s: reply's ECS option %s, want %v with scope %d", what, got, ecs, scope)
	}
}

// localities are the values of hdns_dns_answer_locality_total's label.
var localities = []string{"same-node", "same-zone", "other-zone", "unknown"}

// localityMetric: hdns_dns_answer_locality_total counts each answer of a
// Service whose policy reads the client's place by where its first
// address runs, seen from the client, and nothing else. Between two
// scrapes of /metrics, a pod on each node asks web (its node's pods: one
// same-node answer each, node-a2's same-zone) and the PreferSameZone and
// PreferSameNode Services directly, a pod on node-b asks web through the
// CoreDNS with rewrite (located by ECS), and an unknown ECS client asks
// web and PreferSameZone (two unknown); blind's answer and web's NODATA
// to AAAA are not counted. Each counter moves by as many answers as the
// replies' first addresses say; other-zone by none.
func (e *pathsEnv) localityMetric(t *testing.T) {
	before := e.localityCounts(t)
	want := make(map[string]float64)
	ask := func(name, what, server string, src netip.Addr, ecs netip.Prefix, client *pathsNode, answer []string) {
		t.Helper()
		r := e.expectFor(t, name, what, server, src, ecs, answer)
		if r == nil || len(r.Answer) == 0 {
			return
		}
		want[e.locality(t, client, addrsOf(r)[0])]++
	}
	unknown := netip.MustParsePrefix("198.51.100.1/32")
	ask(e.name, "web, unknown client (ECS)", e.h.DNS, netip.Addr{}, unknown, nil, e.all)
	ask(distributionName(0), "PreferSameZone, unknown client (ECS)", e.h.DNS, netip.Addr{}, unknown, nil, e.distributionPods(0))
	for _, n := range e.nodes() {
		ask(e.name, "web, pod on "+n.node+", direct", e.h.DNS, n.client(3), netip.Prefix{}, &n, e.zoneOf(n).pods)
		for _, d := range []int{0, 2} {
			ask(distributionName(d), pathsDistributions[d].value+", pod on "+n.node+", direct", e.h.DNS, n.client(3),
				netip.Prefix{}, &n, e.distributionAnswer(d, n))
		}
	}
	b := e.zones[1]
	ask(e.name, "web, pod on node-b via CoreDNS with rewrite", net.JoinHostPort(rewriteDNS.String(), "53"), b.client(3),
		netip.Prefix{}, &b, b.pods)
	a := e.zones[0]
	e.expectFor(t, e.blindName(), "blind, pod on node-a, direct (not counted)", e.h.DNS, a.client(3), netip.Prefix{}, e.all)
	if r, err := exchangeFrom(e.h.DNS, a.client(3), netip.Prefix{}, e.name, dns.TypeAAAA); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("web AAAA, pod on node-a, direct: %v (error %v), want NODATA", r, err)
	}
	if want["same-node"] == 0 || want["same-zone"] == 0 || want["unknown"] != 2 {
		t.Fatalf("the questions' answers are %v by locality: want some same-node, some same-zone and 2 unknown", want)
	}
	after := e.localityCounts(t)
	for _, l := range localities {
		if got := after[l] - before[l]; got != want[l] {
			t.Errorf("hdns_dns_answer_locality_total{locality=%q} moved by %v, want %v (before %v, after %v)", l, got, want[l], before, after)
		}
	}
}

// localityCounts scrapes hdns's answer-locality counters, by locality.
func (e *pathsEnv) localityCounts(t *testing.T) map[string]float64 {
	t.Helper()
	out := make(map[string]float64)
	for _, l := range localities {
		v, err := e.h.metric(`hdns_dns_answer_locality_total{locality="` + l + `"}`)
		if err != nil {
			t.Fatal(err)
		}
		out[l] = v
	}
	return out
}

// locality is the locality hdns counts for an answer whose first address
// is first, asked by a client on client's node (nil: an unknown client).
func (e *pathsEnv) locality(t *testing.T, client *pathsNode, first string) string {
	t.Helper()
	n, ok := e.nodeOf(first)
	switch {
	case !ok:
		t.Fatalf("%s is no pod of web or of pathsDistributions", first)
	case client == nil:
		return "unknown"
	case n.node == client.node:
		return "same-node"
	case n.zone == client.zone:
		return "same-zone"
	}
	return "other-zone"
}

// nodeOf is the node of the pod of web or of pathsDistributions at addr.
func (e *pathsEnv) nodeOf(addr string) (pathsNode, bool) {
	for _, n := range e.nodes() {
		if slices.Contains(n.pods, addr) {
			return n, true
		}
		for d := range pathsDistributions {
			if n.distributionPod(d) == addr {
				return n, true
			}
		}
	}
	return pathsNode{}, false
}

// zoneOf is the node of e.zones in n's zone: node-a for node-a2.
func (e *pathsEnv) zoneOf(n pathsNode) pathsNode {
	for _, z := range e.zones {
		if z.zone == n.zone {
			return z
		}
	}
	return n
}

// distributionPods lists the pods of pathsDistributions[d], sorted.
func (e *pathsEnv) distributionPods(d int) []string {
	var out []string
	for _, n := range e.nodes() {
		out = append(out, n.distributionPod(d))
	}
	slices.Sort(out)
	return out
}
