//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// Memory: the RSS of hdns and of CoreDNS, each started
// fresh on a control plane holding 1k, 10k and 50k endpoints, less their
// RSS on an empty control plane, per endpoint.

// memSizes is the endpoint count of consecutive Services, repeated: a
// realistic mix of many small Deployments and a few large ones (mean 16.7
// endpoints per Service), twelve Services per namespace.
var memSizes = []int{1, 2, 2, 3, 3, 5, 5, 10, 10, 20, 39, 100}

// memFixture returns the first Services of the mix whose endpoints add up
// to at least total. A smaller total's fixture is a prefix of a larger's.
// Endpoints look like the EndpointSlice controller's for Deployment pods:
// a targetRef to the Pod, a node name, no hostname.
func memFixture(total int) []service { return sizedFixture(memSizes, total) }

// sizedFixture returns the first Services whose endpoints add up to at
// least total, their sizes cycling through sizes, one cycle per namespace
// (app-000, app-001...), endpoints shaped as memFixture describes.
func sizedFixture(sizes []int, total int) []service {
	var svcs []service
	ip := 0
	for k := 0; ip < total; k++ {
		s := service{ns: fmt.Sprintf("app-%03d", k/len(sizes)), name: fmt.Sprintf("svc-%02d", k%len(sizes))}
		for i := range sizes[k%len(sizes)] {
			s.eps = append(s.eps, endpoint{
				pod:  fmt.Sprintf("%s-6d4cf56db6-%05d", s.name, i),
				node: fmt.Sprintf("node-%02d", ip%50),
				ip:   ipOf(ip),
			})
			ip++
		}
		svcs = append(svcs, s)
	}
	return svcs
}

// memSample is one server's memory at one scale.
type memSample struct {
	rss, peak int64
	heap      int64 // hdns only: Go heap in use (go_memstats_heap_inuse_bytes)
}

// settleRSS waits for the server to settle and returns the median of
// three RSS readings a second apart, and the peak RSS.
func settleRSS(t testing.TB, s *server, settle time.Duration) memSample {
	t.Helper()
	time.Sleep(settle)
	var rs []int64
	var peak int64
	for i := range 3 {
		if i > 0 {
			time.Sleep(time.Second)
		}
		cur, p, err := s.rss()
		if err != nil {
			t.Fatalf("%s RSS: %v", s.name, err)
		}
		rs = append(rs, cur)
		peak = max(peak, p)
	}
	return memSample{rss: int64(median(rs, func(v int64) float64 { return float64(v) })), peak: peak}
}

func TestMemory(t *testing.T) {
	cfg := loadConfig(t)
	cp := harness.Start(t, harness.Options{})
	ctx := context.Background()
	client := fastClient(t, cp)
	settle := 5 * time.Second
	if cfg.smoke {
		settle = time.Second
	}

	// measure starts hdns and CoreDNS fresh, waits until both answer
	// check, asks them a few hundred names, and returns their memory.
	measure := func(svcs []service) (h, c memSample) {
		check := func(addr string) error {
			if len(svcs) == 0 {
				return expect(addr, "nope.default.svc."+zone, dns.TypeA, false, dns.RcodeNameError, 0)
			}
			for _, s := range []service{svcs[0], svcs[len(svcs)-1]} {
				if err := expect(addr, s.fqdn(), dns.TypeA, true, dns.RcodeSuccess, len(s.eps)); err != nil {
					return err
				}
			}
			return nil
		}
		warm := func(addr string) {
			rng := rand.New(rand.NewPCG(2, 6))
			for range min(300, 3*len(svcs)) {
				s := svcs[rng.IntN(len(svcs))]
				exchange(addr, s.fqdn(), dns.TypeA, false)
				exchange(addr, "_http._tcp."+s.fqdn(), dns.TypeSRV, false)
			}
		}
		profile := os.Getenv(ProfileEnv)
		var extra []string
		if profile != "" {
			extra = append(extra, "--pprof")
		}
		hs := startHDNS(t, cp.KubeconfigPath, "", extra...)
		waitReady(t, hs, check)
		warm(hs.addr)
		h = settleRSS(t, hs, settle)
		h.heap = int64(hdnsMetric(t, hs, "go_memstats_heap_inuse_bytes"))
		if profile != "" {
			endpoints := 0
			for _, s := range svcs {
				endpoints += len(s.eps)
			}
			saveHeapProfile(t, hs, filepath.Join(profile, fmt.Sprintf("hdns-heap-%d.pb.gz", endpoints)))
		}
		if err := hs.p.Stop(); err != nil {
			t.Fatal(err)
		}
		cs := startCoreDNS(t, cp.KubeconfigPath, "", check)
		warm(cs.addr)
		c = settleRSS(t, cs, settle)
		if err := cs.p.Stop(); err != nil {
			t.Fatal(err)
		}
		return h, c
	}

	hBase, cBase := measure(nil)
	t.Logf("base RSS: hdns %.1f MiB, CoreDNS %.1f MiB", mib(hBase.rss), mib(cBase.rss))
	type row struct {
		endpoints, services, namespaces int
		h, c                            memSample
	}
	var rows []row
	created := 0
	for _, scale := range cfg.scales {
		svcs := memFixture(scale)
		if created > len(svcs) {
			t.Fatalf("%s must grow: %v", ScalesEnv, cfg.scales)
		}
		begin := time.Now()
		namespaces := createFixture(t, ctx, client, svcs, created)
		created = len(svcs)
		n := 0
		for _, s := range svcs {
			n += len(s.eps)
		}
		t.Logf("%d endpoints in %d Services: created in %v", n, len(svcs), time.Since(begin).Round(time.Millisecond))
		h, c := measure(svcs)
		t.Logf("%d endpoints: hdns %.1f MiB (peak %.1f), CoreDNS %.1f MiB (peak %.1f)", n, mib(h.rss), mib(h.peak), mib(c.rss), mib(c.peak))
		rows = append(rows, row{endpoints: n, services: len(svcs), namespaces: namespaces, h: h, c: c})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "### Memory\n\n")
	fmt.Fprintf(&b, "%s. Each server started fresh after the objects exist, ready, asked a few hundred names, then RSS read after %v (median of 3 readings 1 s apart; peak = VmHWM; hdns's Go heap in use from its /metrics). Per endpoint: (RSS − RSS on an empty control plane) ÷ endpoints. Headless Services without selectors, EndpointSlices of ≤ 100 endpoints written directly; Service sizes cycle through %v.\n\n",
		machine(), settle, memSizes)
	b.WriteString("| endpoints | Services | namespaces | hdns RSS (MiB) | hdns peak (MiB) | hdns heap in use (MiB) | hdns B/endpoint | hdns heap B/endpoint | CoreDNS RSS (MiB) | CoreDNS peak (MiB) | CoreDNS B/endpoint |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| 0 (base) | | | %.1f | %.1f | %.1f | | | %.1f | %.1f | |\n", mib(hBase.rss), mib(hBase.peak), mib(hBase.heap), mib(cBase.rss), mib(cBase.peak))
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %d | %d | %.1f | %.1f | %.1f | %.0f | %.0f | %.1f | %.1f | %.0f |\n", r.endpoints, r.services, r.namespaces,
			mib(r.h.rss), mib(r.h.peak), mib(r.h.heap), float64(r.h.rss-hBase.rss)/float64(r.endpoints), float64(r.h.heap-hBase.heap)/float64(r.endpoints),
			mib(r.c.rss), mib(r.c.peak), float64(r.c.rss-cBase.rss)/float64(r.endpoints))
	}
	fmt.Fprintf(&b, "\nTarget: ≤ 512 B per endpoint above the base. Versions: %s.\n", versions(t, false))
	report(t, b.String())
}

// hdnsMetric returns the value of an unlabelled sample from hdns's /metrics.
func hdnsMetric(t testing.TB, s *server, name string) float64 {
	t.Helper()
	body := hdnsGet(t, s.http, "/metrics")
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("hdns /metrics %s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("hdns /metrics has no %s", name)
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// saveHeapProfile writes hdns's heap profile, taken after a GC, to path.
func saveHeapProfile(t testing.TB, s *server, path string) {
	t.Helper()
	if err := os.WriteFile(path, hdnsGet(t, s.admin, "/debug/pprof/heap?gc=1"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The text form ends with the runtime's MemStats: live heap against
	// heap in use is the memory lost to fragmentation.
	if err := os.WriteFile(strings.TrimSuffix(path, ".pb.gz")+".txt", hdnsGet(t, s.admin, "/debug/pprof/heap?debug=1"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("hdns heap profile: %s", path)
}

// hdnsGet returns the body of a 200 response to GET path from the hdns
// listener at addr (its --http-listen or --admin-listen).
func hdnsGet(t testing.TB, addr, path string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("hdns %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("hdns %s: %s, %v", path, resp.Status, err)
	}
	return body
}
