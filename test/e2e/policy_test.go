//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// The scenarios of this file prove per-Service policies on the
// real control plane: the hdns.dev/policy annotation of a live Service
// changes hdns's answers within a second, a broken one falls back to the
// default and says so, and sessionAffinity: ClientIP keeps a client on one
// pod until its timeout.

// policyAnnotation is the annotation a Service picks its policy with.
const policyAnnotation = "hdns.dev/policy"

// exchangeECS asks hdns one question with exchangeFrom and returns the raw
// response, so that the answer order can be checked. With a valid client
// the query carries an EDNS Client Subnet option naming client with a
// full-length source prefix (/32 or /128), which hdns takes as the client
// instead of the query's source.
func (h *hdnsProcess) exchangeECS(name string, qtype uint16, client netip.Addr) (*dns.Msg, error) {
	resp, err := exchangeFrom(h.DNS, netip.Addr{}, netip.PrefixFrom(client, client.BitLen()), name, qtype)
	if err != nil {
		return nil, fmt.Errorf("%s %s (client %v): %w", name, dns.TypeToString[qtype], client, err)
	}
	return resp, nil
}

// exchangeFrom sends server (host:port) one UDP question (EDNS buffer 1232,
// RD off, 2s timeout), from the local address src when valid, with an EDNS
// Client Subnet option naming ecs (its masked address and length) when
// ecs is valid, and returns the raw response.
func exchangeFrom(server string, src netip.Addr, ecs netip.Prefix, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	if ecs.IsValid() {
		family := uint16(1)
		if ecs.Addr().Is6() {
			family = 2
		}
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family,
			SourceNetmask: uint8(ecs.Bits()), Address: net.IP(ecs.Masked().Addr().AsSlice())})
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	if src.IsValid() {
		c.Dialer = &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
	}
	resp, _, err := c.Exchange(m, server)
	return resp, err
}

// addrsOf returns the addresses of m's A and AAAA answer records, in
// answer order.
func addrsOf(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// echoedECS returns the EDNS Client Subnet option of m's OPT record, or nil.
func echoedECS(m *dns.Msg) *dns.EDNS0_SUBNET {
	opt := m.IsEdns0()
	if opt == nil {
		return nil
	}
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			return e
		}
	}
	return nil
}

// explanation is the part of GET /debug/explain the scenarios read.
type explanation struct {
	Rcode       string `json:"rcode"`
	Service     string `json:"service"`
	Policy      string `json:"policy"`
	PolicyError string `json:"policyError"`
	Candidates  []struct {
		Key   string `json:"key"`
		Pod   string `json:"pod"`
		Ready bool   `json:"ready"`
	} `json:"candidates"`
	Answer []string `json:"answer"`
}

// explain asks hdns's /debug/explain how it answers name/qtype for client
// ("" for the HTTP client's own address).
func (h *hdnsProcess) explain(name, qtype, client string) (explanation, error) {
	v := url.Values{"name": {name}, "type": {qtype}}
	if client != "" {
		v.Set("client", client)
	}
	var e explanation
	code, body, err := h.debugGet("/debug/explain?" + v.Encode())
	if err != nil {
		return e, fmt.Errorf("GET /debug/explain: %w", err)
	}
	if code != http.StatusOK {
		return e, fmt.Errorf("GET /debug/explain: HTTP %d: %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return e, fmt.Errorf("GET /debug/explain: %w\n%s", err, body)
	}
	return e, nil
}

// awaitCond calls cond every answerPoll until it returns true, for at most
// timeout, and fails t with what and cond's last description otherwise.
func awaitCond(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	begin := time.Now()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Since(begin) > timeout {
			t.Fatalf("%s: not within %v; last: %s", what, timeout, last)
		}
		time.Sleep(answerPoll)
	}
}

// specOrder lists the ready IPv4 addresses of Service ns/svc in the
// specification's stable order: its EndpointSlices by name, endpoints as
// listed (a missing ready condition counts as ready).
func (e *env) specOrder(ns, svc string) ([]string, error) {
	list, err := e.cp.Client.DiscoveryV1().EndpointSlices(ns).List(e.ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc,
	})
	if err != nil {
		return nil, err
	}
	ss := list.Items
	slices.SortFunc(ss, func(a, b discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	var order []string
	for _, s := range ss {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				order = append(order, ep.Addresses[0])
			}
		}
	}
	return order, nil
}

// awaitSpecOrder waits until hdns answers name A with exactly the n ready
// addresses of ns/svc in spec order, and returns that order.
func (e *env) awaitSpecOrder(t *testing.T, ns, svc, name string, n int) []string {
	t.Helper()
	var spec []string
	awaitCond(t, name+" A in spec order", answerTimeout, func() (bool, string) {
		var err error
		if spec, err = e.specOrder(ns, svc); err != nil {
			return false, err.Error()
		}
		m, err := e.h.exchangeECS(name, dns.TypeA, netip.Addr{})
		if err != nil {
			return false, err.Error()
		}
		got := addrsOf(m)
		return len(spec) == n && m.Rcode == dns.RcodeSuccess && slices.Equal(got, spec),
			fmt.Sprintf("hdns %s %v, EndpointSlices %v", dns.RcodeToString[m.Rcode], got, spec)
	})
	return spec
}

// policyAnnotationChange: a headless Service of 5 pods without annotation
// answers all 5 in spec order; annotating it "round-robin, first=1" on the
// live Service gives one address per answer within a second, rotating over
// all 5; an invalid annotation is served with the default and reported in
// the metric, in explain and once in the log; removing the annotation
// restores the default and clears the report.
func (e *env) policyAnnotationChange(t *testing.T) {
	const (
		ns      = "policy"
		svcName = "pol"
		name    = svcName + "." + ns + ".svc.cluster.local."
		bound   = time.Second
	)
	e.namespace(t, ns)
	createService(e.ctx, t, e.cp, ns, headless(svcName, corev1.ServicePort{Name: "http", Port: 80}))
	ips := []string{"10.244.40.14", "10.244.40.11", "10.244.40.13", "10.244.40.10", "10.244.40.12"}
	var pods []harness.PodOptions
	for i, ip := range ips {
		pods = append(pods, harness.PodOptions{Name: fmt.Sprintf("pol-%d", i), Labels: map[string]string{"app": svcName}, IPv4: ip})
	}
	if err := createPods(e.ctx, e.cp, ns, pods, 5); err != nil {
		t.Fatal(err)
	}

	// No annotation: the default (ordered) answers every ready endpoint in
	// spec order, query after query.
	e.h.await(t, q(name, dns.TypeA), answers(rrs(name, "A", ips...)...))
	spec := e.awaitSpecOrder(t, ns, svcName, name, len(ips))
	for range 3 {
		m, err := e.h.exchangeECS(name, dns.TypeA, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		if got := addrsOf(m); !slices.Equal(got, spec) {
			t.Fatalf("without annotation: answer %v, want spec order %v every time", got, spec)
		}
	}

	patch := func(value any) time.Time {
		t.Helper()
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{policyAnnotation: value}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.cp.Client.CoreV1().Services(ns).Patch(e.ctx, svcName, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
			t.Fatalf("patch %s %s=%v: %v", svcName, policyAnnotation, value, err)
		}
		return time.Now()
	}

	// The annotation changes the answers within a second of the patch.
	begin := patch("round-robin, first=1")
	var firstAddr string
	for {
		m, err := e.h.exchangeECS(name, dns.TypeA, netip.Addr{})
		if err == nil && m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1 {
			firstAddr = addrsOf(m)[0]
			break
		}
		if err == nil && (m.Rcode != dns.RcodeSuccess || len(m.Answer) != len(ips)) {
			t.Fatalf("while the annotation propagates: %s with %d records %v, want the old 5 or the new 1",
				dns.RcodeToString[m.Rcode], len(m.Answer), addrsOf(m))
		}
		if time.Since(begin) > answerTimeout {
			t.Fatalf("no 1-record answer within %v of the patch (last error %v)", answerTimeout, err)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(begin)
	msg := fmt.Sprintf("hdns e2e policy: annotation patch returned → first 1-record answer: %v (bound %v)", took.Round(time.Microsecond), bound)
	t.Log(msg)
	fmt.Println(msg)
	if took > bound {
		t.Errorf("the annotation took %v to change the answers, want ≤ %v", took, bound)
	}

	// round-robin, first=1: consecutive answers name the next endpoint in
	// spec order, so 5 of them name all 5 pods.
	k := slices.Index(spec, firstAddr)
	if k < 0 {
		t.Fatalf("round-robin answered %s, not an endpoint of %v", firstAddr, spec)
	}
	seen := map[string]bool{firstAddr: true}
	seq := []string{firstAddr}
	for i := 1; i <= 2*len(spec); i++ {
		m, err := e.h.exchangeECS(name, dns.TypeA, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		got := addrsOf(m)
		want := spec[(k+i)%len(spec)]
		if m.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != want {
			t.Fatalf("round-robin query %d after %v: %s %v, want [%s] (spec order %v)", i, seq, dns.RcodeToString[m.Rcode], got, want, spec)
		}
		seq = append(seq, got[0])
		if i < len(spec) {
			seen[got[0]] = true
		}
	}
	if len(seen) != len(spec) {
		t.Errorf("5 consecutive round-robin answers named %d pods, want 5: %v", len(seen), seq[:len(spec)])
	}
	t.Logf("round-robin, first=1: %v", seq)

	// An invalid annotation: the default policy serves the Service, and
	// the reason shows in the metric, in explain and once in the log.
	rejected := func() int {
		n := 0
		for _, line := range strings.Split(e.h.output(), "\n") {
			if strings.Contains(line, "policy annotation rejected") && strings.Contains(line, "service="+ns+"/"+svcName) {
				n++
			}
		}
		return n
	}
	if n := rejected(); n != 0 {
		t.Fatalf("hdns logged %d rejections of %s/%s before its annotation was invalid", n, ns, svcName)
	}
	patch("fastest")
	e.h.await(t, q(name, dns.TypeA), answers(rrs(name, "A", ips...)...))
	e.awaitSpecOrder(t, ns, svcName, name, len(ips))
	awaitCond(t, "hdns_policy_annotation_errors = 1", answerTimeout, func() (bool, string) {
		v, err := e.h.metric("hdns_policy_annotation_errors")
		return err == nil && v == 1, fmt.Sprintf("%v (error %v)", v, err)
	})
	ex, err := e.h.explain(name, "A", "")
	if err != nil {
		t.Fatal(err)
	}
	if ex.PolicyError == "" || !strings.Contains(ex.PolicyError, "fastest") || ex.Policy != "ordered" || len(ex.Answer) != len(ips) {
		t.Errorf("explain with annotation \"fastest\": policy %q, policyError %q, %d answers; want policy \"ordered\", an error naming \"fastest\", 5 answers",
			ex.Policy, ex.PolicyError, len(ex.Answer))
	}
	t.Logf("explain policyError: %s", ex.PolicyError)
	awaitCond(t, "the rejection in hdns's log", answerTimeout, func() (bool, string) {
		n := rejected()
		return n == 1, fmt.Sprintf("%d lines", n)
	})
	e.barrier(t, ns) // another snapshot with the same bad annotation
	if n := rejected(); n != 1 {
		t.Errorf("hdns logged the rejection of %s/%s %d times over two snapshots, want once", ns, svcName, n)
	}

	// The annotation removed: the default again, the error gone.
	begin = patch(nil)
	awaitCond(t, "explain without policyError and hdns_policy_annotation_errors = 0", answerTimeout, func() (bool, string) {
		ex, err := e.h.explain(name, "A", "")
		v, merr := e.h.metric("hdns_policy_annotation_errors")
		return err == nil && merr == nil && ex.PolicyError == "" && v == 0,
			fmt.Sprintf("policyError %q (error %v), metric %v (error %v)", ex.PolicyError, err, v, merr)
	})
	t.Logf("annotation removed → error cleared in %v", time.Since(begin).Round(time.Millisecond))
	e.h.await(t, q(name, dns.TypeA), answers(rrs(name, "A", ips...)...))
	e.awaitSpecOrder(t, ns, svcName, name, len(ips))
}

// sessionAffinity: a headless Service with sessionAffinity: ClientIP
// (timeout 3 s) and "least-loaded, first=1" answers each client (told apart
// by EDNS Client Subnet) with one pod, the same query after query: its
// rendezvous winner. An assignment outlives a new pod that would win the
// client while the client keeps asking, ends after the timeout without
// queries, and moves at once when its pod turns unready.
func (e *env) sessionAffinity(t *testing.T) {
	const (
		ns      = "affinity"
		svcName = "sticky"
		name    = svcName + "." + ns + ".svc.cluster.local."
		timeout = 3 * time.Second
	)
	e.namespace(t, ns)
	svc := headless(svcName, corev1.ServicePort{Name: "http", Port: 80})
	svc.Annotations = map[string]string{policyAnnotation: "least-loaded, first=1"}
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: new(int32(timeout / time.Second))}}
	createService(e.ctx, t, e.cp, ns, svc)

	podOf := map[string]string{} // address → pod name
	var five []string
	var pods []harness.PodOptions
	for i := range 5 {
		pod, ip := fmt.Sprintf("aff-%d", i), fmt.Sprintf("10.244.41.%d", 10+i)
		podOf[ip] = pod
		five = append(five, pod)
		pods = append(pods, harness.PodOptions{Name: pod, Labels: svc.Spec.Selector, IPv4: ip})
	}
	const newPod, newIP = "aff-5", "10.244.41.15"
	podOf[newIP] = newPod
	six := append(slices.Clone(five), newPod)
	newHost := "10-244-41-15." + name // the new pod's own name (no hostname: its dashed address)
	if err := createPods(e.ctx, e.cp, ns, pods, 5); err != nil {
		t.Fatal(err)
	}

	// winner is the pod a fresh client is assigned: the highest rendezvous
	// hash of the client and the endpoint key "namespace/pod".
	winner := func(client netip.Addr, pods []string) string {
		best, bestH := "", uint64(0)
		for i, p := range pods {
			if h := policy.Rendezvous(client, ns+"/"+p); i == 0 || h > bestH {
				best, bestH = p, h
			}
		}
		return best
	}

	// hdns serves the Service with all 5 pods, and the session affinity
	// turned into a sticky step with its timeout.
	awaitCond(t, "explain "+name+" with 5 candidates", answerTimeout, func() (bool, string) {
		ex, err := e.h.explain(name, "A", "198.18.255.255")
		return err == nil && ex.Rcode == "NOERROR" && len(ex.Candidates) == 5 && len(ex.Answer) == 1,
			fmt.Sprintf("%+v (error %v)", ex, err)
	})
	ex, err := e.h.explain(name, "A", "198.18.255.255")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ex.Policy, "sticky=3") || ex.PolicyError != "" {
		t.Errorf("explain: policy %q (error %q), want a chain with sticky=3 from sessionAffinityConfig", ex.Policy, ex.PolicyError)
	}
	t.Logf("policy with sessionAffinity ClientIP: %q", ex.Policy)

	// ask queries name A as client and returns the one pod answered, after
	// checking the reply echoes the client's subnet with scope /32.
	ask := func(client netip.Addr) string {
		t.Helper()
		m, err := e.h.exchangeECS(name, dns.TypeA, client)
		if err != nil {
			t.Fatal(err)
		}
		got := addrsOf(m)
		if m.Rcode != dns.RcodeSuccess || len(got) != 1 || podOf[got[0]] == "" {
			t.Fatalf("client %v: %s %v, want NOERROR with one pod's address", client, dns.RcodeToString[m.Rcode], got)
		}
		ecs := echoedECS(m)
		if ecs == nil || ecs.Family != 1 || ecs.SourceNetmask != 32 || ecs.SourceScope != 32 || !ecs.Address.Equal(net.IP(client.AsSlice())) {
			t.Fatalf("client %v: reply's ECS option %v, want family 1 %v/32 scope 32", client, ecs, client)
		}
		return podOf[got[0]]
	}

	// 20 clients, 5 queries each: one pod per client, always the same,
	// its rendezvous winner; the clients spread over several pods.
	perPod := map[string]int{}
	for i := 1; i <= 20; i++ {
		client := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		first := ask(client)
		for j := 1; j < 5; j++ {
			if got := ask(client); got != first {
				t.Errorf("client %v: query %d answered %s, query 1 %s: want the same pod", client, j+1, got, first)
			}
		}
		if w := winner(client, five); first != w {
			t.Errorf("client %v assigned %s, want its rendezvous winner %s", client, first, w)
		}
		perPod[first]++
	}
	t.Logf("20 clients over 5 pods: %v", perPod)
	if len(perPod) < 3 {
		t.Errorf("20 clients landed on %d pods (%v), want them spread over at least 3", len(perPod), perPod)
	}

	// X: a client whose rendezvous winner is the new pod once it exists,
	// and P before that.
	var x netip.Addr
	for i := range 1 << 16 {
		if c := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}); winner(c, six) == newPod {
			x = c
			break
		}
	}
	if !x.IsValid() {
		t.Fatalf("no client in 198.18.0.0/16 whose rendezvous winner is %s", newPod)
	}
	p := winner(x, five)
	if got := ask(x); got != p {
		t.Fatalf("client %v assigned %s, want its rendezvous winner %s", x, got, p)
	}
	t.Logf("client X=%v: winner among 5 %s, among 6 %s", x, p, newPod)

	// The new pod comes; X, asking every 100 ms, keeps P until a second
	// after hdns serves the new pod.
	created := make(chan error, 1)
	go func() {
		_, err := e.cp.CreateReadyPod(e.ctx, ns, harness.PodOptions{Name: newPod, Labels: svc.Spec.Selector, IPv4: newIP})
		created <- err
	}()
	var served time.Time
	kept := 0
	deadline := time.Now().Add(answerTimeout + 5*time.Second)
	for served.IsZero() || time.Since(served) < time.Second {
		if got := ask(x); got != p {
			t.Fatalf("client X moved from %s to %s within its affinity timeout (new pod served: %t)", p, got, !served.IsZero())
		}
		if served.IsZero() {
			if r, err := e.h.ask(q(newHost, dns.TypeA)); err == nil && r.Rcode == "NOERROR" && len(r.Answer) == 1 {
				served = time.Now()
			}
		} else {
			kept++
		}
		if time.Now().After(deadline) {
			t.Fatalf("hdns did not serve %s within %v", newHost, answerTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if ex, err := e.h.explain(name, "A", "198.18.255.255"); err != nil || len(ex.Candidates) != 6 {
		t.Fatalf("explain after the new pod: %d candidates (error %v), want 6", len(ex.Candidates), err)
	}
	t.Logf("client X kept %s on %d queries over 1 s after %s was served", p, kept, newPod)

	// No query from X for longer than the timeout: the assignment is
	// gone, and X gets its rendezvous winner among the 6, the new pod.
	time.Sleep(timeout + time.Second)
	if got := ask(x); got != newPod {
		t.Fatalf("client X after %v without queries: %s, want its rendezvous winner among 6, %s", timeout+time.Second, got, newPod)
	}
	for range 3 {
		if got := ask(x); got != newPod {
			t.Fatalf("client X reassigned to %s, then answered %s", newPod, got)
		}
	}

	// X's pod turns unready: X moves to the winner among the others as
	// soon as hdns sees it, while its assignment is fresh.
	begin := time.Now()
	if err := e.cp.SetPodReady(e.ctx, ns, newPod, false); err != nil {
		t.Fatal(err)
	}
	for {
		got := ask(x)
		if got == p {
			break
		}
		if got != newPod {
			t.Fatalf("client X moved from unready %s to %s, want %s", newPod, got, p)
		}
		if time.Since(begin) > answerTimeout {
			t.Fatalf("client X still on %s %v after it turned unready", newPod, answerTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	moved := time.Since(begin)
	msg := fmt.Sprintf("hdns e2e sessionAffinity: pod unready (status write began) → its client answered another pod: %v (affinity timeout %v)",
		moved.Round(time.Millisecond), timeout)
	t.Log(msg)
	fmt.Println(msg)
	e.h.await(t, q(newHost, dns.TypeA), nxdomain())

	// The pod is ready again: X, asking all along, stays on P although
	// the new pod is its rendezvous winner.
	if err := e.cp.SetPodReady(e.ctx, ns, newPod, true); err != nil {
		t.Fatal(err)
	}
	served = time.Time{}
	deadline = time.Now().Add(answerTimeout + 5*time.Second)
	for served.IsZero() || time.Since(served) < time.Second {
		if got := ask(x); got != p {
			t.Fatalf("client X moved from %s to %s within its affinity timeout after %s turned ready again", p, got, newPod)
		}
		if served.IsZero() {
			if r, err := e.h.ask(q(newHost, dns.TypeA)); err == nil && r.Rcode == "NOERROR" && len(r.Answer) == 1 {
				served = time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hdns did not serve %s again within %v", newHost, answerTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
