//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hdns-dev/hdns/internal/testproc"
	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// The scenarios of this file prove hdns behind CoreDNS, and hdns as a
// pod's nameserver, on the real control plane: a
// real CoreDNS (built by tools/build-coredns.sh, path in HDNS_E2E_COREDNS)
// running the Corefile of deploy/examples/Corefile.stub-domain forwards
// lb.cluster.local to hdns, and a Go-resolver client and a glibc
// getaddrinfo client (getent ahosts) asking CoreDNS get hdns's
// policy-shaped answers, sticky per ECS-identified client; and an hdns used
// as a pod's only nameserver (--pods insecure, --forward) resolves
// everything such a pod asks for.

const (
	// corednsAddr is where CoreDNS listens (UDP and TCP). glibc's
	// resolv.conf cannot name a port, so it is port 53 on a loopback
	// address of its own.
	corednsAddr = "127.0.0.77"
	// nodeCacheAddr is where the same CoreDNS acts as a node cache for
	// lb.cluster.local: cache, no ECS rewrite, forwarding to hdns.
	nodeCacheAddr = "127.0.0.78"
	// outOfZoneName and outOfZoneAddr are what CoreDNS serves from a file
	// zone (example.test), the name hdns forwards in the pod-nameserver
	// scenario.
	outOfZoneName = "www.example.test."
	outOfZoneAddr = "192.0.2.77"
)

// corednsBinary returns HDNS_E2E_COREDNS or skips t.
func corednsBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HDNS_E2E_COREDNS")
	if bin == "" {
		t.Fatal("HDNS_E2E_COREDNS is not set (test/e2e/run.sh sets it from tools/build-coredns.sh)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("HDNS_E2E_COREDNS: %v", err)
	}
	return bin
}

// stubCorefile turns deploy/examples/Corefile.stub-domain into a Corefile
// for this machine: its block, bound to corednsAddr, forwarding to hdnsAddr
// instead of the example's Service address, plus a block serving
// example.test (with outOfZoneName) from exampleZoneFile, and a node-cache
// block for lb.cluster.local on nodeCacheAddr (cache with a 1 s minimum
// TTL, forwarding to hdnsAddr from CoreDNS's own address, as NodeLocal
// DNSCache does). Everything else of the example is kept as written.
func stubCorefile(t *testing.T, hdnsAddr string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "examples", "Corefile.stub-domain"))
	if err != nil {
		t.Fatal(err)
	}
	example := string(b)
	block := regexp.MustCompile(`(?m)^(lb\.cluster\.local:53 \{)$`)
	if !block.MatchString(example) || strings.Count(example, "forward . 10.96.0.53") != 1 ||
		!strings.Contains(example, "rewrite edns0 subnet set 32 128") {
		t.Fatalf("Corefile.stub-domain: want a block `lb.cluster.local:53 {` with `rewrite edns0 subnet set 32 128` and `forward . 10.96.0.53`:\n%s", example)
	}
	cf := block.ReplaceAllString(example, "$1\n    bind "+corednsAddr)
	cf = strings.Replace(cf, "forward . 10.96.0.53", "forward . "+hdnsAddr, 1)
	cf += fmt.Sprintf("\nexample.test:53 {\n    bind %s\n    file %s\n}\n", corednsAddr, exampleZoneFile)
	cf += fmt.Sprintf("\nlb.cluster.local:53 {\n    bind %s\n    cache 30 {\n        success 9984 30 1\n    }\n    forward . %s\n}\n", nodeCacheAddr, hdnsAddr)
	return cf
}

// exampleZoneFile is the file CoreDNS serves example.test from (relative to
// its working directory), exampleZone its content: an authoritative zone,
// so that a missing name is NXDOMAIN with an SOA (the hosts plugin would
// answer SERVFAIL).
const (
	exampleZoneFile = "db.example.test"
	exampleZone     = `$ORIGIN example.test.
@    3600 IN SOA ns.example.test. hostmaster.example.test. 1 7200 3600 1209600 30
@    3600 IN NS  ns.example.test.
ns   3600 IN A   192.0.2.53
www    60 IN A   ` + outOfZoneAddr + `
`
)

// startCoreDNS runs CoreDNS with corefile, waits until it answers
// outOfZoneName, and stops it at the end of t.
func startCoreDNS(t *testing.T, bin, corefile string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, exampleZoneFile), []byte(exampleZone), 0o644); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	runCoreDNS(t, bin, dir, corefile, "CoreDNS answering "+outOfZoneName, func() (bool, string) {
		got, err := goLookup(context.Background(), netip.Addr{}, corednsAddr+":53", outOfZoneName)
		return err == nil && slices.Equal(got, []string{outOfZoneAddr}), fmt.Sprint(got, err)
	})
	t.Logf("coredns ready in %v", time.Since(begin).Round(time.Millisecond))
}

// runCoreDNS writes corefile into dir, runs CoreDNS there until the end of
// t, and waits until ready reports true; CoreDNS exiting first fails t.
// When t fails, the Corefile and CoreDNS's output are logged.
func runCoreDNS(t *testing.T, bin, dir, corefile, what string, ready func() (bool, string)) {
	t.Helper()
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-conf", path)
	cmd.Dir = dir
	p := testproc.Start(t, "coredns", cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("coredns Corefile:\n%s\ncoredns output:\n%s", corefile, p.Tail(8000))
		}
	})
	awaitCond(t, what, startTimeout, func() (bool, string) {
		select {
		case <-p.Exited():
			t.Fatalf("coredns exited: %v\n%s", cmd.ProcessState, p.Tail(8000))
		default:
		}
		return ready()
	})
}

// askTogether sends n A questions for name to server at once, each from
// its own UDP socket, and returns each reply's first address.
func askTogether(server, name string, n int) ([]string, error) {
	start := make(chan struct{})
	firsts := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			c := &dns.Client{Timeout: 2 * time.Second}
			<-start
			r, _, err := c.Exchange(m, server)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("client %d: %w", i, err)
			case len(r.Answer) == 0:
				errs[i] = fmt.Errorf("client %d: no answer: %s", i, r)
			default:
				if a, ok := r.Answer[0].(*dns.A); ok {
					firsts[i] = a.A.String()
				} else {
					errs[i] = fmt.Errorf("client %d: first answer %s is not an A record", i, r.Answer[0])
				}
			}
		})
	}
	close(start)
	wg.Wait()
	return firsts, errors.Join(errs...)
}

// goLookup resolves name's IPv4 addresses with Go's own resolver
// (PreferGo), all of whose queries go to server; with a valid src they
// are sent from that local address. The addresses come back sorted.
func goLookup(ctx context.Context, src netip.Addr, server, name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		if src.IsValid() {
			if strings.HasPrefix(network, "tcp") {
				d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
			} else {
				d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
			}
		}
		return d.DialContext(ctx, network, server)
	}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.Unmap().String())
	}
	slices.Sort(out)
	return out, nil
}

// getentAhosts runs glibc's getaddrinfo (getent ahosts, AF_UNSPEC) for
// name in a private mount namespace whose /etc/resolv.conf names only
// nameserver, and returns the distinct addresses it printed, sorted.
func getentAhosts(t *testing.T, nameserver, name string) ([]string, error) {
	t.Helper()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+nameserver+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /etc/resolv.conf && exec getent ahosts "$2"`, "sh", resolv, name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("getent ahosts %s: %w\n%s", name, err, out)
	}
	var addrs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !slices.Contains(addrs, f[0]) {
			addrs = append(addrs, f[0])
		}
	}
	slices.Sort(addrs)
	return addrs, nil
}

// coreDNS runs the scenarios with a real CoreDNS: StubDomain (hdns behind CoreDNS) and
// PodNameserver (hdns as a pod's only nameserver, CoreDNS as its upstream).
func (e *env) coreDNS(t *testing.T) {
	bin := corednsBinary(t)
	if _, err := exec.LookPath("getent"); err != nil {
		t.Fatalf("getent: %v", err)
	}
	const (
		ns      = "coredns"
		svcName = "sticky"
		lbName  = svcName + "." + ns + ".svc.lb.cluster.local."
	)
	e.namespace(t, ns)
	svc := headless(svcName, corev1.ServicePort{Name: "http", Port: 80})
	svc.Annotations = map[string]string{policyAnnotation: "sticky, first=1"}
	createService(e.ctx, t, e.cp, ns, svc)
	podOf := map[string]string{} // address → pod
	var pods []harness.PodOptions
	for i := range 4 {
		pod, ip := fmt.Sprintf("st-%d", i), fmt.Sprintf("10.244.60.%d", 10+i)
		podOf[ip] = pod
		pods = append(pods, harness.PodOptions{Name: pod, Labels: svc.Spec.Selector, IPv4: ip})
	}
	if err := createPods(e.ctx, e.cp, ns, pods, 4); err != nil {
		t.Fatal(err)
	}
	// winner is the pod sticky gives a fresh client: the highest
	// rendezvous hash of the client and "namespace/pod".
	winner := func(client netip.Addr) string {
		best, bestH := "", uint64(0)
		for i, p := range pods {
			if h := policy.Rendezvous(client, ns+"/"+p.Name); i == 0 || h > bestH {
				best, bestH = p.Name, h
			}
		}
		return best
	}

	// The second hdns serves lb.cluster.local, the zone the example
	// Corefile forwards, from the same control plane.
	lb := startHDNS(t, "--kubeconfig", e.cp.KubeconfigPath, "--ttl", ttl, "--zone", "lb.cluster.local")
	awaitCond(t, lbName+" with 4 candidates in hdns", answerTimeout, func() (bool, string) {
		ex, err := lb.explain(lbName, "A", "198.18.0.1")
		return err == nil && ex.Rcode == "NOERROR" && len(ex.Candidates) == 4 && len(ex.Answer) == 1,
			fmt.Sprintf("%+v (error %v)", ex, err)
	})
	corefile := stubCorefile(t, lb.DNS)
	startCoreDNS(t, bin, corefile)

	t.Run("StubDomain", func(t *testing.T) {
		// (a) Go's resolver through CoreDNS from 16 loopback sources:
		// each source is one client to hdns (CoreDNS's rewrite puts
		// its address into ECS), gets exactly one address, the same
		// query after query: its rendezvous winner.
		perPod := map[string]int{}
		begin := time.Now()
		queries := 0
		for i := 2; i < 18; i++ {
			src := netip.AddrFrom4([4]byte{127, 0, 0, byte(i)})
			want := winner(src)
			for k := range 3 {
				got, err := goLookup(e.ctx, src, corednsAddr+":53", lbName)
				queries++
				if err != nil {
					t.Fatalf("Go resolver from %v via CoreDNS, query %d: %v", src, k, err)
				}
				if len(got) != 1 || podOf[got[0]] != want {
					t.Fatalf("Go resolver from %v via CoreDNS, query %d: %v, want exactly the address of %s (its rendezvous winner)", src, k, got, want)
				}
			}
			perPod[want]++
		}
		t.Logf("Go resolver via CoreDNS: 16 sources × 3 queries in %v (%v/query), clients per pod %v",
			time.Since(begin).Round(time.Millisecond), (time.Since(begin) / time.Duration(queries)).Round(time.Microsecond), perPod)
		if len(perPod) < 2 {
			t.Errorf("16 sources all went to one pod %v; sticky should spread clients", perPod)
		}

		// Without the rewrite every client would be CoreDNS itself, and
		// all 16 sources would get one pod.
		self := winner(netip.MustParseAddr("127.0.0.1"))

		// (b) glibc getaddrinfo (getent ahosts) with CoreDNS as its
		// only nameserver, sending from 127.0.0.1.
		for k := range 3 {
			got, err := getentAhosts(t, corednsAddr, lbName)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || podOf[got[0]] != self {
				t.Fatalf("getent ahosts %s via CoreDNS, run %d: %v, want exactly the address of %s (winner for 127.0.0.1)", lbName, k, got, self)
			}
			if k == 0 {
				t.Logf("getent ahosts %s via CoreDNS: %v (%s)", lbName, got, self)
			}
		}
		// The same through Go's resolver from 127.0.0.1.
		got, err := goLookup(e.ctx, netip.MustParseAddr("127.0.0.1"), corednsAddr+":53", lbName)
		if err != nil || len(got) != 1 || podOf[got[0]] != self {
			t.Errorf("Go resolver from 127.0.0.1 via CoreDNS: %v (error %v), want the address of %s", got, err, self)
		}
	})

	t.Run("CacheCopies", func(t *testing.T) {
		// A node cache forwards every client that misses while its own
		// question for the name is in flight (CoreDNS's cache does not
		// merge them), then keeps one of the answers for all its
		// clients. hdns answers such copies alike: two clients asking
		// the cache at once get the same first address. One fresh
		// least-loaded Service per trial, so that each starts with an
		// empty cache and nothing held, all over four pods of their own,
		// whose shared ledger entries then stay within a handout of each
		// other: a second answer counted would put another pod first.
		const trials = 8
		selector := map[string]string{"app": "copies"}
		var copyPods []harness.PodOptions
		for i := range 4 {
			copyPods = append(copyPods, harness.PodOptions{Name: fmt.Sprintf("cp-%d", i), Labels: selector, IPv4: fmt.Sprintf("10.244.61.%d", 10+i)})
		}
		if err := createPods(e.ctx, e.cp, ns, copyPods, 4); err != nil {
			t.Fatal(err)
		}
		for k := range trials {
			s := headless(fmt.Sprintf("copies-%d", k), corev1.ServicePort{Name: "http", Port: 80})
			s.Spec.Selector = selector
			s.Annotations = map[string]string{policyAnnotation: "least-loaded, first=1"}
			createService(e.ctx, t, e.cp, ns, s)
		}
		for k := range trials {
			name := fmt.Sprintf("copies-%d.%s.svc.lb.cluster.local.", k, ns)
			awaitCond(t, name+" with 4 candidates in hdns", answerTimeout, func() (bool, string) {
				ex, err := lb.explain(name, "A", "")
				return err == nil && ex.Rcode == "NOERROR" && len(ex.Candidates) == 4, fmt.Sprintf("%+v (error %v)", ex, err)
			})
		}
		copies, err := lb.metric("hdns_policy_copies_total")
		if err != nil {
			t.Fatal(err)
		}
		conclusive := 0
		for k := range trials {
			name := fmt.Sprintf("copies-%d.%s.svc.lb.cluster.local.", k, ns)
			series := fmt.Sprintf(`hdns_policy_handouts_total{service="%s/copies-%d"}`, ns, k)
			before, _ := lb.metric(series) // absent until the Service's first answer
			firsts, err := askTogether(nodeCacheAddr+":53", name, 2)
			if err != nil {
				t.Fatal(err)
			}
			after, err := lb.metric(series)
			if err != nil {
				t.Fatal(err)
			}
			if after-before < 2 {
				continue // the cache answered the second client itself
			}
			conclusive++
			if firsts[0] != firsts[1] {
				t.Errorf("trial %d: hdns got both clients' questions from the cache and put %s and %s first; the cache keeps one answer for all its clients, so both should name the same pod", k, firsts[0], firsts[1])
			}
		}
		t.Logf("%d of %d trials reached hdns twice", conclusive, trials)
		if after, err := lb.metric("hdns_policy_copies_total"); err != nil || after-copies < float64(conclusive) {
			t.Errorf("hdns_policy_copies_total went from %v to %v (error %v), want it up by at least %d", copies, after, err, conclusive)
		}
		if conclusive < 2 {
			t.Fatalf("only %d of %d trials had the cache forward both questions; nothing was shown", conclusive, trials)
		}
	})

	t.Run("PodNameserver", func(t *testing.T) {
		// A ClusterIP Service over the same pods.
		cip := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{
				Selector: svc.Spec.Selector,
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
			},
		}
		created, err := e.cp.Client.CoreV1().Services(ns).Create(e.ctx, cip, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create service %s/web: %v", ns, err)
		}
		clusterIP := created.Spec.ClusterIP
		if _, err := netip.ParseAddr(clusterIP); err != nil {
			t.Fatalf("service %s/web: cluster IP %q: %v", ns, clusterIP, err)
		}

		// hdns as a pod's only nameserver: its zone, pod records, and
		// CoreDNS (serving example.test) as upstream for the rest.
		h := startHDNS(t, "--kubeconfig", e.cp.KubeconfigPath, "--ttl", ttl,
			"--pods", "insecure", "--forward", corednsAddr+":53")
		src := netip.MustParseAddr("127.0.0.1")
		headlessName := svcName + "." + ns + ".svc.cluster.local."
		podName := "10-244-60-12." + ns + ".pod.cluster.local."
		cases := []struct {
			what, name string
			ok         func([]string) bool
			want       string
		}{
			{"in-zone headless (sticky, first=1)", headlessName, func(a []string) bool { return len(a) == 1 && podOf[a[0]] == winner(src) }, "the address of " + winner(src)},
			{"ClusterIP Service", "web." + ns + ".svc.cluster.local.", func(a []string) bool { return slices.Equal(a, []string{clusterIP}) }, clusterIP},
			{"pod", podName, func(a []string) bool { return slices.Equal(a, []string{"10.244.60.12"}) }, "10.244.60.12"},
			{"out-of-zone, forwarded", outOfZoneName, func(a []string) bool { return slices.Equal(a, []string{outOfZoneAddr}) }, outOfZoneAddr},
		}
		for _, c := range cases {
			var got []string
			var err error
			awaitCond(t, c.what+" "+c.name+" via hdns", answerTimeout, func() (bool, string) {
				got, err = goLookup(e.ctx, src, h.DNS, c.name)
				return err == nil && c.ok(got), fmt.Sprintf("%v (error %v), want %s", got, err, c.want)
			})
			t.Logf("Go resolver → hdns only: %s %s → %v", c.what, c.name, got)
		}

		// A name the upstream's zone lacks: its NXDOMAIN passes through
		// hdns, and the client gives up (not found, not a server error).
		if got, err := goLookup(e.ctx, src, h.DNS, "nothing.example.test."); err == nil {
			t.Errorf("nothing.example.test via hdns: %v, want NXDOMAIN", got)
		} else if dnsErr, ok := err.(*net.DNSError); !ok || !dnsErr.IsNotFound {
			t.Errorf("nothing.example.test via hdns: %v, want not found", err)
		}

		// The forwarded answer is not authoritative and carries RA, the
		// in-zone one is authoritative.
		fw, err := h.exchange(q(outOfZoneName, dns.TypeA))
		if err != nil {
			t.Fatal(err)
		}
		if fw.Authoritative || !fw.RecursionAvailable || len(fw.Answer) != 1 {
			t.Errorf("forwarded %s: aa=%t ra=%t %d answers, want aa=false ra=true 1 answer", outOfZoneName, fw.Authoritative, fw.RecursionAvailable, len(fw.Answer))
		}
		in, err := h.exchange(q(podName, dns.TypeA))
		if err != nil {
			t.Fatal(err)
		}
		if !in.Authoritative || in.RecursionAvailable {
			t.Errorf("in-zone %s: aa=%t ra=%t, want aa=true ra=false", podName, in.Authoritative, in.RecursionAvailable)
		}
	})
}
