//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// The rolling restart's timings, scaled down from the shipped Deployment
// (a 5 s lameduck, kube-proxy seconds behind) to keep the test short.
const (
	rollLameduck = 2 * time.Second
	// rollProbePeriod is how often the test, playing the kubelet, probes
	// each replica's /readyz (the Deployment: 5 s); two failures in a row
	// make it not ready.
	rollProbePeriod = 200 * time.Millisecond
	// rollPropagation is how long after the EndpointSlice changes the
	// load generator, playing kube-proxy, starts following it (watch
	// latency and an iptables sync); it polls the slice every
	// rollSlicePoll on top.
	rollPropagation = 500 * time.Millisecond
	rollSlicePoll   = 100 * time.Millisecond
	// rollRate is the queries per second of the load; every
	// rollTCPEvery-th goes over TCP, on a connection of its own.
	rollRate     = 200
	rollTCPEvery = 10
	// rollClientTimeout is how long a client waits for an answer, without
	// retrying: a query not answered in time is lost.
	rollClientTimeout = 2 * time.Second
)

// TestRollingRestart restarts three hdns replicas one after another
// (SIGTERM, wait for the exit, start a new one, wait until it is ready)
// under a steady load of UDP and TCP queries spread over the replicas as
// kube-proxy spreads a Service's traffic: only over the endpoints its
// EndpointSlice marks ready, seen some time after each change. No query
// may be lost: each gets its answer within the client's timeout, none gets
// SERVFAIL or REFUSED.
func TestRollingRestart(t *testing.T) {
	const ns = "roll"
	cp := harness.Start(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cp.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// web is what the load asks for; its slice is hand-written.
	createService(ctx, t, cp, ns, fixture.Service{Namespace: ns, Name: "web", Headless: true}.API())
	if _, err := cp.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, fixture.EndpointSlice{
		Namespace: ns, Name: "web", Service: "web", Labels: manualSlice,
		Endpoints: []fixture.Endpoint{{Address: "192.0.2.11"}, {Address: "192.0.2.12"}, {Address: "192.0.2.13"}},
	}.API(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// hdns is the replicas' Service, without a selector: the test writes
	// its EndpointSlice as the EndpointSlice controller would from the
	// replicas' readiness.
	dnsPort := freeDNSPort(t)
	createService(ctx, t, cp, ns, fixture.Service{Namespace: ns, Name: "hdns", Ports: []fixture.Port{
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
	}}.API())
	d := &deployment{t: t, ctx: ctx, cp: cp, ns: ns, port: dnsPort,
		args: []string{"--kubeconfig", cp.KubeconfigPath, "--ttl", ttl, "--lameduck", rollLameduck.String()}}
	d.createSlice()
	for range 3 {
		d.start()
	}
	go d.kubelet()
	proxy := &kubeProxy{client: cp.Client.DiscoveryV1().EndpointSlices(ns), slice: "hdns"}
	go proxy.run(ctx)
	proxy.awaitReady(t, d)

	load := startLoad(ctx, proxy, d, "web."+ns+".svc.cluster.local.")
	time.Sleep(2 * time.Second)
	var exits []time.Duration
	for range 3 {
		exits = append(exits, d.restart())
		proxy.awaitReady(t, d)
	}
	time.Sleep(2 * time.Second)
	got := load.stop()
	t.Logf("rolling restart of 3 replicas (lameduck %v, SIGTERM to exit %v): %v", rollLameduck, exits, got)
	if got.lost() != 0 {
		t.Errorf("%d of %d queries lost (%v); first: %s", got.lost(), got.sent, got, got.firstLost)
	}
	if got.inLameduck == 0 {
		t.Error("no query reached a replica in its lameduck: the test did not exercise it")
	}
}

// freeDNSPort returns a port free for UDP and TCP on 127.0.0.1, for every
// replica to listen on at its own address, as pods share a container port.
func freeDNSPort(t *testing.T) int {
	t.Helper()
	for range 10 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		tl.Close()
		if err == nil {
			ul.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}

// podNetwork is where the test's pod network delivers packets for podIP
// 10.244.99.n: the loopback address 127.0.0.(20+n).
func podNetwork(podIP netip.Addr) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, 0, 20 + podIP.As4()[3]})
}

// replica is one hdns process, a pod of the deployment.
type replica struct {
	name string
	// podIP is its address in the EndpointSlice, which refuses loopback
	// addresses; addr is where it listens for DNS, UDP and TCP: the test's
	// pod network maps one to the other (podNetwork).
	podIP netip.Addr
	addr  netip.AddrPort
	h     *hdnsProcess
	// terminating is set when the replica was sent SIGTERM (the pod's
	// deletion).
	terminating atomic.Bool
	// failures counts the kubelet's consecutive failed probes; only the
	// kubelet goroutine uses it.
	failures int
}

// deployment runs the replicas, each on its own loopback address and the
// shared port, and writes their EndpointSlice.
type deployment struct {
	t    *testing.T
	ctx  context.Context
	cp   *harness.ControlPlane
	ns   string
	port int
	args []string

	mu       sync.Mutex
	replicas []*replica
	started  int
	// writeErr is the last error writing the slice.
	writeErr atomic.Pointer[error]
}

// start runs a new replica at a fresh address, as a new pod gets a new IP,
// once it answers /readyz with 200.
func (d *deployment) start() {
	d.mu.Lock()
	d.started++
	n := d.started
	d.mu.Unlock()
	r := &replica{name: fmt.Sprintf("hdns-%d", n), podIP: netip.AddrFrom4([4]byte{10, 244, 99, byte(n)})}
	r.addr = netip.AddrPortFrom(podNetwork(r.podIP), uint16(d.port))
	r.h = startHDNS(d.t, append(slices.Clone(d.args), "--listen", r.addr.String())...)
	d.mu.Lock()
	d.replicas = append(d.replicas, r)
	d.mu.Unlock()
}

// restart replaces the oldest replica: SIGTERM, wait for its exit, start
// a new one. It returns how long the old one took to exit.
func (d *deployment) restart() time.Duration {
	d.mu.Lock()
	old := d.replicas[0]
	d.mu.Unlock()
	old.terminating.Store(true)
	sent := time.Now()
	if err := old.h.p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		d.t.Fatal(err)
	}
	if err := old.h.p.Wait(rollLameduck + 10*time.Second); err != nil {
		d.t.Fatalf("%s after SIGTERM: %v", old.name, err)
	}
	took := time.Since(sent)
	if code := old.h.p.Cmd.ProcessState.ExitCode(); code != 0 {
		d.t.Errorf("%s exited with status %d after SIGTERM:\n%s", old.name, code, old.h.p.Tail(4000))
	}
	if took < rollLameduck {
		d.t.Errorf("%s exited %v after SIGTERM, within its %v lameduck", old.name, took, rollLameduck)
	}
	d.mu.Lock()
	d.replicas = slices.DeleteFunc(d.replicas, func(r *replica) bool { return r == old })
	d.mu.Unlock()
	d.start()
	return took
}

// addrs is the replicas' DNS addresses.
func (d *deployment) addrs() []netip.AddrPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []netip.AddrPort
	for _, r := range d.replicas {
		out = append(out, r.addr)
	}
	return out
}

// byAddr returns the replica at addr, or nil.
func (d *deployment) byAddr(addr netip.AddrPort) *replica {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.replicas {
		if r.addr == addr {
			return r
		}
	}
	return nil
}

func (d *deployment) createSlice() {
	slice := fixture.EndpointSlice{Namespace: d.ns, Name: "hdns", Service: "hdns", Labels: manualSlice, Ports: []fixture.Port{
		{Name: "dns", Port: int32(d.port), Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: int32(d.port), Protocol: corev1.ProtocolTCP},
	}}.API()
	if _, err := d.cp.Client.DiscoveryV1().EndpointSlices(d.ns).Create(d.ctx, slice, metav1.CreateOptions{}); err != nil {
		d.t.Fatal(err)
	}
}

// kubelet plays the kubelet and the EndpointSlice controller, which the
// harness does not run: every rollProbePeriod it probes each replica's
// /readyz, as the Deployment's readinessProbe does (timeout 1 s,
// failureThreshold 2, successThreshold 1), and writes the slice's
// conditions from the result: ready and serving while the probe passes,
// terminating from SIGTERM on. A replica that exited leaves the slice.
// (In a cluster the EndpointSlice controller also marks a deleted pod not
// ready at once, before any probe fails; the test leaves that out and
// follows /readyz alone, the slower path, which the lameduck must cover.)
func (d *deployment) kubelet() {
	tick := time.NewTicker(rollProbePeriod)
	defer tick.Stop()
	var written []discoveryv1.Endpoint
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-tick.C:
		}
		d.mu.Lock()
		replicas := slices.DeleteFunc(slices.Clone(d.replicas), func(r *replica) bool { return !r.h.p.Alive() })
		d.mu.Unlock()
		passed := probeAll(replicas)
		var eps []discoveryv1.Endpoint
		for i, r := range replicas {
			if passed[i] {
				r.failures = 0
			} else {
				r.failures++
			}
			ready := r.failures < 2
			eps = append(eps, discoveryv1.Endpoint{
				Addresses:  []string{r.podIP.String()},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: d.ns, Name: r.name},
				Conditions: discoveryv1.EndpointConditions{Ready: new(ready), Serving: new(ready), Terminating: new(r.terminating.Load())},
			})
		}
		if slices.EqualFunc(eps, written, endpointEqual) {
			continue
		}
		if err := d.writeSlice(eps); err != nil {
			d.writeErr.Store(&err)
			continue
		}
		written = eps
	}
}

// probeAll GETs each replica's /readyz at once and reports which answered
// 200 within a second.
func probeAll(replicas []*replica) []bool {
	probe := &http.Client{Timeout: time.Second}
	passed := make([]bool, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() {
			resp, err := probe.Get("http://" + r.h.HTTP + "/readyz")
			if err == nil {
				passed[i] = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return passed
}

func endpointEqual(a, b discoveryv1.Endpoint) bool {
	return a.Addresses[0] == b.Addresses[0] && *a.Conditions.Ready == *b.Conditions.Ready &&
		*a.Conditions.Serving == *b.Conditions.Serving && *a.Conditions.Terminating == *b.Conditions.Terminating
}

func (d *deployment) writeSlice(eps []discoveryv1.Endpoint) error {
	client := d.cp.Client.DiscoveryV1().EndpointSlices(d.ns)
	slice, err := client.Get(d.ctx, "hdns", metav1.GetOptions{})
	if err != nil {
		return err
	}
	slice.Endpoints = eps
	_, err = client.Update(d.ctx, slice, metav1.UpdateOptions{})
	return err
}

// kubeProxy follows the hdns Service's EndpointSlice as kube-proxy does:
// it sends only to the endpoints marked ready, and sees each change of the
// slice rollPropagation after it polled it.
type kubeProxy struct {
	client interface {
		Get(context.Context, string, metav1.GetOptions) (*discoveryv1.EndpointSlice, error)
	}
	slice string
	ready atomic.Pointer[[]netip.AddrPort]
}

// seen is a version of the slice's ready endpoints, observed at a time.
type seen struct {
	at    time.Time
	ready []netip.AddrPort
}

func (p *kubeProxy) run(ctx context.Context) {
	tick := time.NewTicker(rollSlicePoll)
	defer tick.Stop()
	var pending []seen
	version := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s, err := p.client.Get(ctx, p.slice, metav1.GetOptions{}); err == nil && s.ResourceVersion != version {
			version = s.ResourceVersion
			pending = append(pending, seen{at: time.Now(), ready: readyEndpoints(s)})
		}
		for len(pending) > 0 && time.Since(pending[0].at) >= rollPropagation {
			p.ready.Store(&pending[0].ready)
			pending = pending[1:]
		}
	}
}

func readyEndpoints(s *discoveryv1.EndpointSlice) []netip.AddrPort {
	var out []netip.AddrPort
	for _, ep := range s.Endpoints {
		if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
			podIP := netip.MustParseAddr(ep.Addresses[0])
			out = append(out, netip.AddrPortFrom(podNetwork(podIP), uint16(*s.Ports[0].Port)))
		}
	}
	return out
}

// pick returns a ready endpoint at random, as kube-proxy picks one per
// new connection (each UDP query here comes from a new port).
func (p *kubeProxy) pick() (netip.AddrPort, bool) {
	ready := p.ready.Load()
	if ready == nil || len(*ready) == 0 {
		return netip.AddrPort{}, false
	}
	return (*ready)[rand.IntN(len(*ready))], true
}

// awaitReady waits until the proxy sends to exactly d's replicas.
func (p *kubeProxy) awaitReady(t *testing.T, d *deployment) {
	t.Helper()
	want := d.addrs()
	awaitCond(t, "kube-proxy following the ready replicas", 30*time.Second, func() (bool, string) {
		ready := p.ready.Load()
		if ready == nil {
			return false, "no slice seen"
		}
		got := slices.Clone(*ready)
		slices.SortFunc(got, netip.AddrPort.Compare)
		w := slices.Clone(want)
		slices.SortFunc(w, netip.AddrPort.Compare)
		var writeErr error
		if err := d.writeErr.Load(); err != nil {
			writeErr = *err
		}
		return slices.Equal(got, w), fmt.Sprintf("ready %v, want %v (last error writing the slice: %v)", got, w, writeErr)
	})
}

// rollTally counts the load's queries by outcome.
type rollTally struct {
	sent, udp, tcp, answered int
	// inLameduck is the answered queries sent to a replica after its
	// SIGTERM.
	inLameduck                           int
	noEndpoint, timeout, rcode, otherErr int
	firstLost                            string
}

func (r rollTally) lost() int { return r.sent - r.answered }

func (r rollTally) String() string {
	return fmt.Sprintf("%d queries (%d UDP, %d TCP), %d answered (%d by a replica in its lameduck); lost: %d without a ready endpoint, %d timed out, %d SERVFAIL/REFUSED/other rcode, %d other errors",
		r.sent, r.udp, r.tcp, r.answered, r.inLameduck, r.noEndpoint, r.timeout, r.rcode, r.otherErr)
}

// load sends queries at rollRate through the proxy until stopped.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	tally  rollTally
}

func startLoad(ctx context.Context, proxy *kubeProxy, d *deployment, name string) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel}
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / rollRate)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			tcp := n%rollTCPEvery == 0
			l.wg.Go(func() { l.query(proxy, d, name, tcp) })
		}
	})
	return l
}

// query sends one query to the endpoint the proxy picks and counts its
// outcome.
func (l *load) query(proxy *kubeProxy, d *deployment, name string, tcp bool) {
	to, ok := proxy.pick()
	var lameduck bool
	var reply *dns.Msg
	var err error
	if ok {
		r := d.byAddr(to)
		lameduck = r != nil && r.terminating.Load()
		c := &dns.Client{Net: "udp", Timeout: rollClientTimeout}
		if tcp {
			c.Net = "tcp"
		}
		reply, _, err = c.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), to.String())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := &l.tally
	t.sent++
	if tcp {
		t.tcp++
	} else {
		t.udp++
	}
	var lost string
	var netErr net.Error
	switch {
	case !ok:
		t.noEndpoint++
		lost = "no ready endpoint"
	case err != nil && errors.As(err, &netErr) && netErr.Timeout():
		t.timeout++
		lost = fmt.Sprintf("to %v (tcp %v): %v", to, tcp, err)
	case err != nil:
		t.otherErr++
		lost = fmt.Sprintf("to %v (tcp %v): %v", to, tcp, err)
	case reply.Rcode != dns.RcodeSuccess || len(reply.Answer) == 0:
		t.rcode++
		lost = fmt.Sprintf("to %v (tcp %v): %s, %d answers", to, tcp, dns.RcodeToString[reply.Rcode], len(reply.Answer))
	default:
		t.answered++
		if lameduck {
			t.inLameduck++
		}
	}
	if lost != "" && t.firstLost == "" {
		t.firstLost = time.Now().Format("15:04:05.000 ") + lost
	}
}

// stop ends the load, waits for the queries in flight, and returns the
// tally.
func (l *load) stop() rollTally {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tally
}
