//go:build bench

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// Throughput: dnsperf against hdns, CoreDNS (kubernetes
// plugin on the same control plane) and Knot DNS (a zone file with the
// same records), each server pinned to CPU 0 and dnsperf to CPU 1, runs
// interleaved server by server, medians reported.

const (
	benchNS = "bench"
	// llPolicy is the second hdns configuration measured.
	llPolicy = "least-loaded, first=2"
	// ll1Policy is measured over Services of ll1Sizes endpoints: its CPU
	// per query should not grow with them.
	ll1Policy = "least-loaded, first=1"
	// dnsperf's clients (sockets or connections) and outstanding queries.
	perfClients     = 10
	perfOutstanding = 100
	// floorLabel names the I/O floor's row (udpfloor).
	floorLabel = "I/O floor"
)

// variant is one server configuration a mix is run against.
type variant struct {
	label string
	srv   *server
	file  string // dnsperf input
}

// ll1Sizes are the sizes of the Services ll1Policy is measured over; the
// first is the reference the others are compared with.
var ll1Sizes = []int{10, 1000, 10000}

// ll1Service names the ll1Policy Service of n endpoints.
func ll1Service(n int) string { return fmt.Sprintf("ll1-%d", n) }

// mix is one query mix.
type mix struct {
	// key names the mix's subtest: -run 'Throughput/key' runs only it.
	key      string
	name     string
	tcp      bool
	variants []variant
}

// perfResult is what one dnsperf run measured.
type perfResult struct {
	qps            float64
	sent, lost     int64
	avgLat, maxLat float64 // seconds
	respBytes      int
	rcodes         string
	cpuPerQuery    time.Duration // server CPU per completed query
	rss            int64
}

var (
	reQPS     = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	reSent    = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	reDone    = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost    = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reLatency = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+) \(min [0-9.]+, max ([0-9.]+)\)`)
	rePacket  = regexp.MustCompile(`Average packet size:\s+request \d+, response (\d+)`)
	reRcodes  = regexp.MustCompile(`Response codes:\s+(.*)`)
)

// dnsperf runs dnsperf pinned to clientCore against s for d and returns
// its figures plus the server's CPU per query and RSS afterwards. With
// profile set, perf records the server's CPU meanwhile into that file.
func dnsperf(t testing.TB, s *server, file string, tcp bool, d time.Duration, profile string) perfResult {
	t.Helper()
	host, port, _ := strings.Cut(s.addr, ":")
	args := []string{"-c", clientCore, "dnsperf", "-s", host, "-p", port, "-d", file,
		"-l", strconv.Itoa(int(d / time.Second)), "-c", strconv.Itoa(perfClients),
		"-q", strconv.Itoa(perfOutstanding), "-t", "2", "-e"}
	if tcp {
		args = append(args, "-m", "tcp")
	}
	var rec *exec.Cmd
	if profile != "" {
		rec = exec.Command("perf", "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(s.p.Pid()), "-o", profile,
			"--", "sleep", strconv.Itoa(int(d/time.Second)))
		if err := rec.Start(); err != nil {
			t.Logf("perf record: %v (no profile)", err)
			rec = nil
		}
	}
	cpu0, err := s.cpu()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "taskset", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dnsperf %v: %v\n%s", args, err, out)
	}
	cpu1, err := s.cpu()
	if err != nil {
		t.Fatal(err)
	}
	if rec != nil {
		if err := rec.Wait(); err != nil {
			t.Logf("perf record: %v", err)
		}
	}
	text := string(out)
	num := func(re *regexp.Regexp, i int) float64 {
		m := re.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("dnsperf output lacks %v:\n%s", re, text)
		}
		v, _ := strconv.ParseFloat(m[i], 64)
		return v
	}
	r := perfResult{
		qps:    num(reQPS, 1),
		sent:   int64(num(reSent, 1)),
		lost:   int64(num(reLost, 1)),
		avgLat: num(reLatency, 1),
		maxLat: num(reLatency, 2),
	}
	done := int64(num(reDone, 1))
	if m := rePacket.FindStringSubmatch(text); m != nil {
		r.respBytes, _ = strconv.Atoi(m[1])
	}
	if m := reRcodes.FindStringSubmatch(text); m != nil {
		r.rcodes = strings.TrimSpace(m[1])
	}
	if done > 0 {
		r.cpuPerQuery = (cpu1 - cpu0) / time.Duration(done)
	}
	r.rss, _, _ = s.rss()
	return r
}

// throughputFixture is the benchmark's namespace: hot Services with 3 and
// 100 endpoints, the same with the least-loaded policy, Services of
// ll1Sizes endpoints with ll1Policy, and names/100 Services of 100
// endpoints with hostnames p000..p099 (the uniform mix's names).
func throughputFixture(names int) []service {
	ip := 0
	mk := func(name string, n int, host string, ann map[string]string) service {
		s := service{ns: benchNS, name: name, annotations: ann}
		for i := range n {
			s.eps = append(s.eps, endpoint{host: fmt.Sprintf(host, i), ip: ipOf(ip), pod: fmt.Sprintf("%s-%d", name, i), node: "node-0"})
			ip++
		}
		return s
	}
	ll := map[string]string{policyAnnotation: llPolicy}
	svcs := []service{
		mk("hot3", 3, "h%d", nil), mk("hot100", 100, "h%d", nil),
		mk("hot3-ll", 3, "h%d", ll), mk("hot100-ll", 100, "h%d", ll),
	}
	for _, n := range ll1Sizes {
		svcs = append(svcs, mk(ll1Service(n), n, "h%d", map[string]string{policyAnnotation: ll1Policy}))
	}
	for i := range (names + 99) / 100 {
		svcs = append(svcs, mk(fmt.Sprintf("s%03d", i), 100, "p%03d", nil))
	}
	return svcs
}

// writeQueries writes dnsperf input, one "name type" line each.
func writeQueries(t testing.TB, dir, name string, lines []string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestThroughput(t *testing.T) {
	cfg := loadConfig(t)
	lookTool(t, "dnsperf", "dnsperf")
	lookTool(t, "taskset", "util-linux")
	cp := harness.Start(t, harness.Options{})
	ctx := context.Background()
	client := fastClient(t, cp)
	svcs := throughputFixture(cfg.names)
	begin := time.Now()
	if err := createNamespaces(ctx, client, []string{benchNS}); err != nil {
		t.Fatal(err)
	}
	if err := createServices(ctx, client, svcs); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d Services in %v", len(svcs), time.Since(begin).Round(time.Millisecond))

	fq := func(s string) string { return s + "." + benchNS + ".svc." + zone }
	// Every server must answer like the others before it is measured.
	hot3, hot100, srv3 := fq("hot3"), fq("hot100"), "_http._tcp."+fq("hot3")
	lastName := fmt.Sprintf("p%03d.s%03d", (cfg.names-1)%100, (cfg.names-1)/100)
	readyAll := func(addr string) error {
		for _, c := range []struct {
			name  string
			qtype uint16
			tcp   bool
			rcode int
			n     int
		}{
			{hot3, dns.TypeA, false, dns.RcodeSuccess, 3},
			{hot100, dns.TypeA, true, dns.RcodeSuccess, 100},
			{srv3, dns.TypeSRV, false, dns.RcodeSuccess, 3},
			{fq(lastName), dns.TypeA, false, dns.RcodeSuccess, 1},
			{fq("nx-0"), dns.TypeA, false, dns.RcodeNameError, 0},
		} {
			if err := expect(addr, c.name, c.qtype, c.tcp, c.rcode, c.n); err != nil {
				return err
			}
		}
		return nil
	}
	h := startHDNS(t, cp.KubeconfigPath, serverCore)
	waitReady(t, h, readyAll)
	co := startCoreDNS(t, cp.KubeconfigPath, serverCore, readyAll)
	kn := startKnot(t, zoneFile(svcs), serverCore, readyAll)
	if err := expect(h.addr, "hot3-ll."+benchNS+".svc."+zone, dns.TypeA, false, dns.RcodeSuccess, 2); err != nil {
		t.Fatalf("hdns %s: %v", llPolicy, err)
	}
	for _, n := range ll1Sizes {
		if err := expect(h.addr, fq(ll1Service(n)), dns.TypeA, false, dns.RcodeSuccess, 1); err != nil {
			t.Fatalf("hdns %s: %v", ll1Policy, err)
		}
	}
	// The I/O floor answers the 3-record question with hdns's own reply.
	r, err := exchange(h.addr, hot3, dns.TypeA, false)
	if err != nil {
		t.Fatal(err)
	}
	r.Compress = true
	reply, err := r.Pack()
	if err != nil {
		t.Fatal(err)
	}
	fl := startFloor(t, reply, serverCore, func(addr string) error {
		return expect(addr, hot3, dns.TypeA, false, dns.RcodeSuccess, 3)
	})

	dir := t.TempDir()
	var uniform []string
	for i := range cfg.names {
		uniform = append(uniform, fmt.Sprintf("%s A", fq(fmt.Sprintf("p%03d.s%03d", i%100, i/100))))
	}
	rng := rand.New(rand.NewPCG(6, 6))
	rng.Shuffle(len(uniform), func(i, j int) { uniform[i], uniform[j] = uniform[j], uniform[i] })
	var nx []string
	for i := range 1000 {
		nx = append(nx, fq(fmt.Sprintf("nx-%d", i))+" A")
	}
	files := map[string]string{
		"hot3":     writeQueries(t, dir, "hot3", []string{hot3 + " A"}),
		"hot3ll":   writeQueries(t, dir, "hot3ll", []string{fq("hot3-ll") + " A"}),
		"hot100":   writeQueries(t, dir, "hot100", []string{hot100 + " A"}),
		"hot100ll": writeQueries(t, dir, "hot100ll", []string{fq("hot100-ll") + " A"}),
		"srv":      writeQueries(t, dir, "srv", []string{srv3 + " SRV"}),
		"srvll":    writeQueries(t, dir, "srvll", []string{"_http._tcp." + fq("hot3-ll") + " SRV"}),
		"uniform":  writeQueries(t, dir, "uniform", uniform),
		"nx":       writeQueries(t, dir, "nx", nx),
	}
	var bySize []variant
	for _, n := range ll1Sizes {
		name := ll1Service(n)
		files[name] = writeQueries(t, dir, name, []string{fq(name) + " A"})
		bySize = append(bySize, variant{label: ll1Label(n), srv: h, file: files[name]})
	}
	// CoreDNS answers every endpoint of the 1,000 (truncated at 1232 B).
	bySize = append(bySize, variant{label: "CoreDNS", srv: co, file: files[ll1Service(ll1Sizes[1])]})
	all := func(def, ll string) []variant {
		v := []variant{{label: "hdns", srv: h, file: files[def]}}
		if ll != "" {
			v = append(v, variant{label: "hdns " + llPolicy, srv: h, file: files[ll]})
		}
		return append(v, variant{label: "CoreDNS", srv: co, file: files[def]}, variant{label: "Knot", srv: kn, file: files[def]})
	}
	mixes := []mix{
		{key: "hot3", name: "A, 3 records", variants: append(all("hot3", "hot3ll"), variant{label: floorLabel, srv: fl, file: files["hot3"]})},
		{key: "hot100", name: "A, 100 records, UDP (TC at 1232 B)", variants: all("hot100", "hot100ll")},
		{key: "srv", name: "SRV, 3 records", variants: all("srv", "srvll")},
		{key: "uniform", name: fmt.Sprintf("A, %d names uniformly", cfg.names), variants: all("uniform", "")},
		{key: "nx", name: "NXDOMAIN", variants: all("nx", "")},
		{key: "tcp", name: "A, 100 records, TCP", tcp: true, variants: all("hot100", "hot100ll")},
		{key: "size", name: "A, " + ll1Policy + ", by Service size", variants: bySize},
	}

	// Warm every server up once (JIT-free, but caches, pools and the Go
	// heap settle).
	for _, s := range []*server{h, co, kn, fl} {
		dnsperf(t, s, files["hot3"], false, time.Second, "")
	}
	results := map[[2]int][]perfResult{}
	profile := os.Getenv(ProfileEnv)
	for run := range cfg.runs {
		for mi, m := range mixes {
			t.Run(m.key, func(t *testing.T) {
				for vi, v := range m.variants {
					prof := ""
					if profile != "" && run == 0 && mi == 0 && vi == 0 {
						prof = filepath.Join(profile, "hdns.perf.data")
					}
					r := dnsperf(t, v.srv, v.file, m.tcp, cfg.duration, prof)
					t.Logf("run %d %-40s %-30s %9.0f qps lost %d avg %.3f ms cpu %v/q rss %d MiB %s",
						run+1, m.name, v.label, r.qps, r.lost, r.avgLat*1e3, r.cpuPerQuery, r.rss>>20, r.rcodes)
					results[[2]int{mi, vi}] = append(results[[2]int{mi, vi}], r)
				}
			})
		}
	}
	for _, s := range []*server{h, co, kn, fl} {
		if !s.p.Alive() {
			t.Fatalf("%s died during the runs", s.name)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "### Throughput and latency\n\n")
	fmt.Fprintf(&b, "%s. %d run(s) of %v per server and mix, interleaved; medians. Server on CPU %s, dnsperf (%d clients, %d outstanding, EDNS) on CPU %s. qps ÷: hdns qps over CoreDNS / Knot qps on the same mix (higher is faster). CPU µs/query: the server's CPU time (user + system, /proc) per answered query; CPU ÷: hdns CPU per query over CoreDNS / Knot's (lower is cheaper) — the fairer comparison where dnsperf, not the server, is the limit.\n\n",
		machine(), cfg.runs, cfg.duration, serverCore, perfClients, perfOutstanding, clientCore)
	b.WriteString("| mix | server | qps (median) | qps ÷ CoreDNS | qps ÷ Knot | qps per run | lost | latency avg / max (ms) | CPU µs/query | CPU ÷ CoreDNS | CPU ÷ Knot | RSS (MiB) | response (B) |\n")
	b.WriteString("|---|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|\n")
	var hot3CPU, sizeCPU map[string]float64 // for the lines below the table
	for mi, m := range mixes {
		if len(results[[2]int{mi, 0}]) == 0 {
			continue // not run (-run)
		}
		med, cpu := map[string]float64{}, map[string]float64{}
		switch m.key {
		case "hot3":
			hot3CPU = cpu
		case "size":
			sizeCPU = cpu
		}
		for vi, v := range m.variants {
			med[v.label] = median(results[[2]int{mi, vi}], func(r perfResult) float64 { return r.qps })
			cpu[v.label] = median(results[[2]int{mi, vi}], func(r perfResult) float64 { return float64(r.cpuPerQuery) / float64(time.Microsecond) })
		}
		for vi, v := range m.variants {
			rs := results[[2]int{mi, vi}]
			q := med[v.label]
			ratio := func(of map[string]float64, other string) string {
				if !strings.HasPrefix(v.label, "hdns") || of[other] == 0 {
					return ""
				}
				return fmt.Sprintf("%.2f", of[v.label]/of[other])
			}
			var per []string
			var lost int64
			for _, r := range rs {
				per = append(per, fmt.Sprintf("%.0f", r.qps))
				lost += r.lost
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %d | %.3f / %.1f | %.1f | %s | %s | %.0f | %.0f |\n",
				m.name, v.label, q, ratio(med, "CoreDNS"), ratio(med, "Knot"), strings.Join(per, ", "), lost,
				median(rs, func(r perfResult) float64 { return r.avgLat * 1e3 }),
				median(rs, func(r perfResult) float64 { return r.maxLat * 1e3 }),
				cpu[v.label], ratio(cpu, "CoreDNS"), ratio(cpu, "Knot"),
				median(rs, func(r perfResult) float64 { return float64(r.rss) / (1 << 20) }),
				median(rs, func(r perfResult) float64 { return float64(r.respBytes) }))
		}
	}
	if f := hot3CPU[floorLabel]; f > 0 {
		fmt.Fprintf(&b, "\n%s: hdns's UDP loop (server/udpio) answering every query with hdns's own 3-record reply (test/bench/udpfloor). On the 3-record mix, CPU per query over the floor's: hdns %.2f (above 1 is its answer path; on this machine one server's medians move by 5–15%% between runs), Knot %.2f, CoreDNS %.2f. An answer path that cost nothing would make hdns %.2f× cheaper than CoreDNS on this machine.\n",
			floorLabel, hot3CPU["hdns"]/f, hot3CPU["Knot"]/f, hot3CPU["CoreDNS"]/f, hot3CPU["CoreDNS"]/f)
	}
	if ref := sizeCPU[ll1Label(ll1Sizes[0])]; ref > 0 {
		var ratios []string
		for _, n := range ll1Sizes[1:] {
			ratios = append(ratios, fmt.Sprintf("%d endpoints %.2f", n, sizeCPU[ll1Label(n)]/ref))
		}
		fmt.Fprintf(&b, "\n%s by Service size: CPU per query over the %d-endpoint Service's: %s (1 is flat in the Service's size).\n",
			ll1Policy, ll1Sizes[0], strings.Join(ratios, ", "))
	}
	fmt.Fprintf(&b, "\nVersions: %s.\n", versions(t, true))
	report(t, b.String())
}

// ll1Label is the label of the ll1Policy row over n endpoints.
func ll1Label(n int) string { return fmt.Sprintf("hdns, %d endpoints", n) }

// median returns the median of f over rs (the mean of the middle two for
// an even count).
func median[T any](rs []T, f func(T) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// machine describes the CPU, core count, memory and kernel.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			mem = fmt.Sprintf(", %d GiB", (kb+1<<19)>>20)
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d CPUs%s, Linux %s", model, numCPU(), mem, kernel)
}
