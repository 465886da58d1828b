//go:build bench

package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// Propagation: the time from a pod status write (Ready
// flipped through the status subresource, as a kubelet does) to the first
// changed answer, for hdns and for CoreDNS (kubernetes plugin, no cache)
// watching the same control plane, polled every millisecond. The real
// EndpointSlice controller turns the pod change into the slice change.

const (
	propNS      = "prop"
	propService = "web"
	propPods    = 3
	propPoll    = time.Millisecond
	// propTimeout bounds one change's wait for both servers.
	propTimeout = 10 * time.Second
)

// answerAddrs returns the sorted A records addr answers for name, or nil
// on any error.
func answerAddrs(addr, name string) []string {
	r, err := exchange(addr, name, dns.TypeA, false)
	if err != nil || r.Rcode != dns.RcodeSuccess {
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// awaitAnswer polls addr until it answers want for name, and returns when
// it first did, or false after deadline.
func awaitAnswer(addr, name string, want []string, deadline time.Time) (time.Time, bool) {
	for time.Now().Before(deadline) {
		if slices.Equal(answerAddrs(addr, name), want) {
			return time.Now(), true
		}
		time.Sleep(propPoll)
	}
	return time.Time{}, false
}

func TestPropagation(t *testing.T) {
	cfg := loadConfig(t)
	cp := harness.Start(t, harness.Options{})
	ctx := context.Background()
	if _, err := cp.CreateNamespace(ctx, propNS); err != nil {
		t.Fatal(err)
	}
	sel := map[string]string{"app": propService}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: propService, Namespace: propNS},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: sel,
			Ports: []corev1.ServicePort{{Name: portName, Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := cp.Client.CoreV1().Services(propNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var all []string
	for i := range propPods {
		ip := fmt.Sprintf("10.250.0.%d", i+1)
		all = append(all, ip)
		if _, err := cp.CreateReadyPod(ctx, propNS, harness.PodOptions{Name: fmt.Sprintf("%s-%d", propService, i), Labels: sel, IPv4: ip}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(all)
	name := propService + "." + propNS + ".svc." + zone
	ready := func(addr string) error {
		if got := answerAddrs(addr, name); !slices.Equal(got, all) {
			return fmt.Errorf("%s: %v, want %v", name, got, all)
		}
		return nil
	}
	h := startHDNS(t, cp.KubeconfigPath, "")
	waitReady(t, h, ready)
	co := startCoreDNS(t, cp.KubeconfigPath, "", ready)
	servers := []*server{h, co}

	// A watch on the Service's EndpointSlices times the control plane's
	// share: write → slice change seen by a watcher.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := cp.Client.DiscoveryV1().EndpointSlices(propNS).Watch(wctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + propService})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	type sliceEvent struct {
		at    time.Time
		ready int
	}
	events := make(chan sliceEvent, 1024)
	go func() {
		for ev := range w.ResultChan() {
			sl, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			n := 0
			for _, e := range sl.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					n++
				}
			}
			select {
			case events <- sliceEvent{time.Now(), n}:
			default:
			}
		}
	}()

	pod := propService + "-0"
	lat := map[string][]time.Duration{}
	var writes []time.Duration
	missed := map[string]int{}
	for i := range cfg.changes {
		readyNow := i%2 == 1 // even changes make the pod unready, odd ones ready again
		want := all
		if !readyNow {
			want = all[1:]
		}
		p, err := cp.Client.CoreV1().Pods(propNS).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		harness.SetReadiness(p, readyNow)
		for len(events) > 0 {
			<-events
		}
		deadline := time.Now().Add(propTimeout)
		var wg sync.WaitGroup
		got := make([]time.Time, len(servers))
		begin := time.Now()
		if _, err := cp.Client.CoreV1().Pods(propNS).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		writes = append(writes, time.Since(begin))
		for j, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[j], _ = awaitAnswer(s.addr, name, want, deadline)
			}()
		}
		wg.Wait()
		for j, s := range servers {
			if got[j].IsZero() {
				missed[s.name]++
				continue
			}
			lat[s.name] = append(lat[s.name], got[j].Sub(begin))
		}
	sliceWait:
		for {
			select {
			case ev := <-events:
				if ev.ready == len(want) {
					lat["EndpointSlice watch"] = append(lat["EndpointSlice watch"], ev.at.Sub(begin))
					for j, s := range servers {
						if !got[j].IsZero() {
							k := s.name + " after the watch"
							lat[k] = append(lat[k], got[j].Sub(ev.at))
						}
					}
					break sliceWait
				}
			default:
				break sliceWait
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "### Propagation\n\n")
	fmt.Fprintf(&b, "%s. %d changes of one pod's Ready condition (status subresource write) in a headless Service of %d pods; time from the start of the write to the first changed answer, servers polled every %v over UDP. CoreDNS without the cache plugin. The API write itself took %.1f ms (median). The EndpointSlice watch row is the control plane's share: write → slice change seen by the benchmark's own watch; the \"after the watch\" rows are each server's own share: that moment → its changed answer (negative when its watch beat the benchmark's).\n\n",
		machine(), cfg.changes, propPods, propPoll, ms(percentile(writes, 50)))
	b.WriteString("| server | changes | p50 (ms) | p99 (ms) | max (ms) | missed (> 10 s) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	for _, n := range []string{"EndpointSlice watch", "hdns", "CoreDNS", "hdns after the watch", "CoreDNS after the watch"} {
		d := lat[n]
		fmt.Fprintf(&b, "| %s | %d | %.1f | %.1f | %.1f | %d |\n", n, len(d), ms(percentile(d, 50)), ms(percentile(d, 99)), ms(percentile(d, 100)), missed[n])
	}
	fmt.Fprintf(&b, "\nTarget: hdns p99 < 100 ms. Versions: %s.\n", versions(t, false))
	report(t, b.String())
}

// percentile returns the p-th percentile (nearest rank) of d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
