//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// auditPolicy records every list and watch of Services and EndpointSlices,
// so the test can see hdns's informers come back after the outage.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["list", "watch"]
    resources:
      - group: ""
        resources: ["services"]
      - group: "discovery.k8s.io"
        resources: ["endpointslices"]
  - level: None
`

// Phases of the continuous querier in TestAPIOutage.
const (
	phaseSteady   = iota // API server up: answers must equal the zone before the outage
	phaseOutage          // API server down: the same
	phaseRecovery        // restarting and after: answers may change
	phases
)

var phaseNames = [phases]string{"steady", "outage", "recovery"}

// tally counts the continuous querier's outcomes in one phase.
type tally struct {
	queries, servfail, timeouts, errors, wrong int
	firstBad                                   string
}

func (t tally) String() string {
	return fmt.Sprintf("%d queries, %d SERVFAIL, %d timeouts, %d other errors, %d unexpected answers",
		t.queries, t.servfail, t.timeouts, t.errors, t.wrong)
}

// TestAPIOutage stops kube-apiserver for 30 s under a running hdns, which
// must keep answering its last zone: a query every 50 ms (UDP and TCP in
// turn) sees no SERVFAIL, no timeout and no changed answer. While the API
// server is down a Service is deleted straight from etcd (the API server's
// storage), so that hdns can only learn of it by relisting. After the
// restart, that Service must disappear, changes made through the API (a pod
// unready, a pod added, a Service deleted, a Service created, a hand-written
// EndpointSlice changed) must show up,
// and the API server's audit log must show hdns's informers watching and
// relisting both Services and EndpointSlices again.
func TestAPIOutage(t *testing.T) {
	const (
		ns     = "outage"
		outage = 30 * time.Second
	)
	dir := t.TempDir()
	policyPath, auditLog := filepath.Join(dir, "audit-policy.yaml"), filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policyPath, []byte(auditPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := harness.Start(t, harness.Options{ExtraAPIServerArgs: []string{
		"--audit-policy-file=" + policyPath, "--audit-log-path=" + auditLog, "--audit-log-format=json",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := cp.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// svc-a is headless: its answer follows the EndpointSlice informer (and
	// the EndpointSlice controller). ext-b and cip-c answer from the
	// Service alone (a CNAME, a cluster IP), so their NXDOMAIN proves that
	// hdns's Service informer saw the deletion, not that slices went away.
	svcA := headless("svc-a", corev1.ServicePort{Name: "http", Port: 80})
	createService(ctx, t, cp, ns, svcA)
	createService(ctx, t, cp, ns, fixture.Service{Namespace: ns, Name: "ext-b", ExternalName: "b.example.com"}.API())
	cipC, err := cp.Client.CoreV1().Services(ns).Create(ctx,
		fixture.Service{Namespace: ns, Name: "cip-c", Ports: []fixture.Port{{Name: "http", Port: 80}}}.API(), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service cip-c: %v", err)
	}
	if err := createPods(ctx, cp, ns, []harness.PodOptions{
		{Name: "a-0", Labels: svcA.Spec.Selector, IPv4: "10.244.50.10"},
		{Name: "a-1", Labels: svcA.Spec.Selector, IPv4: "10.244.50.11"},
	}, 2); err != nil {
		t.Fatal(err)
	}
	// manual-e has a hand-written EndpointSlice: its changes reach hdns
	// without the EndpointSlice controller.
	createService(ctx, t, cp, ns, fixture.Service{Namespace: ns, Name: "manual-e", Headless: true}.API())
	sliceE, err := cp.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, fixture.EndpointSlice{
		Namespace: ns, Name: "manual-e", Service: "manual-e", Labels: manualSlice,
		Endpoints: []fixture.Endpoint{{Address: "192.0.2.60"}},
	}.API(), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create EndpointSlice manual-e: %v", err)
	}
	h := startHDNS(t, "--kubeconfig", cp.KubeconfigPath, "--ttl", ttl)
	name := func(svc string) string { return svc + "." + ns + ".svc.cluster.local." }
	before := map[string]want{
		name("svc-a"):    answers(rrs(name("svc-a"), "A", "10.244.50.10", "10.244.50.11")...),
		name("ext-b"):    answers(name("ext-b") + " CNAME b.example.com."),
		name("cip-c"):    answers(rrs(name("cip-c"), "A", cipC.Spec.ClusterIP)...),
		name("manual-e"): answers(rrs(name("manual-e"), "A", "192.0.2.60")...),
	}
	names := make([]string, 0, len(before))
	for n, w := range before {
		h.await(t, q(n, dns.TypeA), w)
		names = append(names, n)
	}
	slices.Sort(names)

	// The continuous querier.
	var phase atomic.Int32
	var tallies [phases]tally
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p := phase.Load()
			d := q(names[i%len(names)], dns.TypeA)
			d.tcp = i%2 == 1
			tl := &tallies[p]
			tl.queries++
			m, err := h.exchange(d)
			var bad string
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				tl.timeouts++
				bad = err.Error()
			case err != nil:
				tl.errors++
				bad = err.Error()
			case m.Rcode == dns.RcodeServerFailure:
				tl.servfail++
				bad = d.String() + ": SERVFAIL"
			case p != phaseRecovery && !before[d.name].matches(toReply(m), h.TTL):
				tl.wrong++
				bad = fmt.Sprintf("%s: %v", d, toReply(m))
			}
			if bad != "" && tl.firstBad == "" {
				tl.firstBad = fmt.Sprintf("%s after %d queries: %s", phaseNames[p], tl.queries, bad)
			}
		}
	}()
	stopQuerier := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	defer stopQuerier()
	time.Sleep(time.Second)

	// The outage.
	phase.Store(phaseOutage)
	begin := time.Now()
	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	t.Logf("API server stopped in %v", down.Sub(begin).Round(time.Millisecond))
	key := harness.EtcdPrefix + "/services/specs/" + ns + "/ext-b"
	if n, err := cp.DeleteFromEtcd(ctx, key); err != nil || n != 1 {
		t.Fatalf("delete %s from etcd during the outage: %d deleted, %v", key, n, err)
	}
	for time.Since(down) < outage {
		time.Sleep(min(time.Second, outage-time.Since(down)))
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body, err := h.get(path); err != nil || code != http.StatusOK {
				t.Errorf("GET %s during the outage: %d %q %v, want 200 (hdns serves its last zone)", path, code, body, err)
			}
		}
		if t.Failed() {
			break
		}
	}
	// hdns says its zone is stale.
	if v, err := h.metric("hdns_zone_source_up"); err != nil || v != 0 {
		t.Errorf("hdns_zone_source_up at the end of the outage: %v %v, want 0", v, err)
	}
	phase.Store(phaseRecovery)
	restartBegin := time.Now()
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	t.Logf("API server down for %v, restarted in %v", restartBegin.Sub(down).Round(time.Millisecond), restarted.Sub(restartBegin).Round(time.Millisecond))

	// Changes through the API after the restart.
	if err := cp.SetPodReady(ctx, ns, "a-1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.CreateReadyPod(ctx, ns, harness.PodOptions{Name: "a-2", Labels: svcA.Spec.Selector, IPv4: "10.244.50.12"}); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.CoreV1().Services(ns).Delete(ctx, "cip-c", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete cip-c: %v", err)
	}
	createService(ctx, t, cp, ns, fixture.Service{Namespace: ns, Name: "ext-d", ExternalName: "d.example.com"}.API())
	sliceE.Endpoints = append(sliceE.Endpoints, discoveryv1.Endpoint{Addresses: []string{"192.0.2.61"}})
	if _, err := cp.Client.DiscoveryV1().EndpointSlices(ns).Update(ctx, sliceE, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update EndpointSlice manual-e: %v", err)
	}
	// hdns probes the API server every 2 s and, once it answers again,
	// relists through fresh informers instead of waiting out client-go's
	// reflector backoff (up to 60 s after an outage this long). The bound
	// allows the probe, the relist and a busy machine.
	const recoveryBound = 20 * time.Second
	var took []string
	for _, c := range []struct {
		what string
		d    dnsQuery
		w    want
	}{
		{"Service deleted during the outage", q(name("ext-b"), dns.TypeA), nxdomain()},
		{"Service deleted after it", q(name("cip-c"), dns.TypeA), nxdomain()},
		{"Service created after it", q(name("ext-d"), dns.TypeA), answers(name("ext-d") + " CNAME d.example.com.")},
		{"EndpointSlice changed after it", q(name("manual-e"), dns.TypeA), answers(rrs(name("manual-e"), "A", "192.0.2.60", "192.0.2.61")...)},
	} {
		h.awaitWithin(t, c.d, c.w, recoveryBound)
		took = append(took, fmt.Sprintf("%s %v", c.what, time.Since(restarted).Round(100*time.Millisecond)))
	}
	if v, err := h.metric("hdns_zone_source_up"); err != nil || v != 1 {
		t.Errorf("hdns_zone_source_up after the recovery: %v %v, want 1", v, err)
	}
	// Pod changes reach hdns through the EndpointSlice controller, which
	// recovers from the outage at client-go's pace (up to a minute or
	// more), on its own schedule: wait for its slices, then hdns (whose
	// watches are live again by now) must follow promptly.
	kcmCtx, kcmCancel := context.WithTimeout(ctx, 3*time.Minute)
	defer kcmCancel()
	if _, err := cp.WaitForEndpointSlices(kcmCtx, ns, "svc-a", func(ss []discoveryv1.EndpointSlice) bool {
		var ready []string
		for _, s := range ss {
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
					ready = append(ready, ep.Addresses...)
				}
			}
		}
		return slices.Equal(sorted(ready), []string{"10.244.50.10", "10.244.50.12"})
	}); err != nil {
		t.Fatalf("the EndpointSlice controller did not recover from the outage: %v", err)
	}
	kcmTook := time.Since(restarted)
	h.await(t, q(name("svc-a"), dns.TypeA), answers(rrs(name("svc-a"), "A", "10.244.50.10", "10.244.50.12")...))
	took = append(took, fmt.Sprintf("pod unready + pod added after it %v (the EndpointSlice controller wrote them at %v)",
		time.Since(restarted).Round(100*time.Millisecond), kcmTook.Round(100*time.Millisecond)))
	time.Sleep(500 * time.Millisecond) // a few more queries of the converged zone
	stopQuerier()

	for p, tl := range tallies {
		t.Logf("querier, %s phase: %v", phaseNames[p], tl)
		if tl.servfail+tl.timeouts+tl.errors+tl.wrong > 0 {
			t.Errorf("querier, %s phase: %v; first: %s", phaseNames[p], tl, tl.firstBad)
		}
	}
	if tallies[phaseOutage].queries < int(outage/(100*time.Millisecond)) {
		t.Errorf("only %d queries during a %v outage: the querier stalled", tallies[phaseOutage].queries, outage)
	}
	watchErrors, err := h.metric(`hdns_zone_source_errors_total{source="kubernetes"}`)
	if err != nil {
		watchErrors = 0 // the series exists only once counted
	}
	out := tallies[phaseOutage]
	msg := fmt.Sprintf("hdns e2e API outage: API server down %v; during it %d queries (UDP and TCP), %d SERVFAIL, %d timeouts, %d changed answers; "+
		"answered after the API server was ready again: %s; hdns counted %v watch errors",
		restartBegin.Sub(down).Round(100*time.Millisecond), out.queries, out.servfail, out.timeouts, out.wrong, strings.Join(took, ", "), watchErrors)
	t.Log(msg)
	fmt.Println(msg)

	// hdns's informers reconnected and relisted: the restarted API server
	// audited, from user agent "hdns", a watch of both resources and a
	// relist of both (a list, or a watch with sendInitialEvents=true). The
	// relist is required: the restarted API server's watch cache starts
	// after the etcd deletion, so a watch resumed from hdns's old resource
	// version is refused as too old, and only a relist reveals ext-b gone.
	events, err := readAudit(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []string{"services", "endpointslices"} {
		var watched, relisted bool
		for _, ev := range events {
			if ev.UserAgent != "hdns" || ev.ObjectRef.Resource != res || ev.RequestReceivedTimestamp.Before(restartBegin) || ev.Stage != "ResponseStarted" {
				continue
			}
			t.Logf("after the restart, hdns: %s %s", strings.ToUpper(ev.Verb), ev.RequestURI)
			watched = watched || ev.Verb == "watch"
			relisted = relisted || ev.Verb == "list" || strings.Contains(ev.RequestURI, "sendInitialEvents=true")
		}
		if !watched || !relisted {
			t.Errorf("%s: after the restart hdns watched=%t relisted=%t, want both (%d hdns requests audited in all)", res, watched, relisted, countUA(events, "hdns"))
		}
	}
}

// auditEvent is the part of an audit.k8s.io/v1 Event this test reads.
type auditEvent struct {
	Verb                     string    `json:"verb"`
	UserAgent                string    `json:"userAgent"`
	RequestURI               string    `json:"requestURI"`
	Stage                    string    `json:"stage"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
	ObjectRef                struct {
		Resource string `json:"resource"`
	} `json:"objectRef"`
}

// readAudit decodes a JSON-lines audit log.
func readAudit(path string) ([]auditEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	var out []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("audit log %s: %w", path, err)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	return out, nil
}

func countUA(events []auditEvent, ua string) int {
	n := 0
	for _, ev := range events {
		if ev.UserAgent == ua {
			n++
		}
	}
	return n
}
