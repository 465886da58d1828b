//go:build bench

package balance

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/internal/testproc"
)

// buildGetaddrinfo compiles testdata/getaddrinfo.c with gcc into dir.
func buildGetaddrinfo(t *testing.T, dir string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("the glibc client needs gcc: %v", err)
	}
	path := filepath.Join(dir, "getaddrinfo")
	out, err := exec.Command(gcc, "-O2", "-Wall", "-Werror", "-pthread", "-o", path, "testdata/getaddrinfo.c").CombinedOutput()
	if err != nil {
		t.Fatalf("gcc getaddrinfo.c: %v\n%s", err, out)
	}
	return path
}

// hdnsProc is a running hdns.
type hdnsProc struct {
	*testproc.Proc
	DNS, HTTP, Admin string
}

// startHDNS runs hdns with args on free loopback ports and waits for
// /readyz.
func startHDNS(t *testing.T, bin string, args ...string) *hdnsProc {
	t.Helper()
	args = append(args, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	h := &hdnsProc{Proc: testproc.Start(t, "hdns", exec.Command(bin, args...))}
	m, err := h.WaitLine(testproc.HDNSServing, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h.DNS, h.HTTP = m[1], m[2]
	if m, err = h.WaitLine(testproc.HDNSAdmin, time.Second); err != nil {
		t.Fatal(err)
	}
	h.Admin = m[1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + h.HTTP + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		if time.Now().After(deadline) || !h.Alive() {
			t.Fatalf("hdns not ready: %v\n%s", err, h.Tail(8000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// candidates returns how many candidates hdns's explain lists for name.
func (h *hdnsProc) candidates(name string) (int, error) {
	q := url.Values{"name": {name}, "type": {"A"}, "client": {"198.18.0.1"}}
	resp, err := http.Get("http://" + h.Admin + "/debug/explain?" + q.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ex struct {
		Rcode      string            `json:"rcode"`
		Candidates []json.RawMessage `json:"candidates"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ex); err != nil {
		return 0, err
	}
	if ex.Rcode != "NOERROR" {
		return 0, fmt.Errorf("rcode %s", ex.Rcode)
	}
	return len(ex.Candidates), nil
}

var handoutLine = regexp.MustCompile(`^hdns_policy_endpoint_handouts_total\{(.*)\} (\S+)$`)
var labelPair = regexp.MustCompile(`(\w+)="([^"]*)"`)

// handouts reads hdns_policy_endpoint_handouts_total (hdns runs with
// --endpoint-metrics): Service name → endpoint key → handouts.
func (h *hdnsProc) handouts() (map[string]map[string]float64, error) {
	resp, err := http.Get("http://" + h.HTTP + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := handoutLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var svc, ep string
		for _, kv := range labelPair.FindAllStringSubmatch(m[1], -1) {
			switch kv[1] {
			case "service":
				svc = kv[2][strings.LastIndex(kv[2], "/")+1:]
			case "endpoint":
				ep = kv[2]
			}
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil || svc == "" {
			continue
		}
		if out[svc] == nil {
			out[svc] = map[string]float64{}
		}
		out[svc][ep] = v
	}
	return out, sc.Err()
}

// metric reads one unlabelled series from hdns's /metrics.
func (h *hdnsProc) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + h.HTTP + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no series %s", name)
}

// handouts sums hdns_policy_endpoint_handouts_total over the replicas hs.
func handouts(hs []*hdnsProc) (map[string]map[string]float64, error) {
	sum := map[string]map[string]float64{}
	for _, h := range hs {
		m, err := h.handouts()
		if err != nil {
			return nil, err
		}
		for svc, eps := range m {
			if sum[svc] == nil {
				sum[svc] = map[string]float64{}
			}
			for ep, v := range eps {
				sum[svc][ep] += v
			}
		}
	}
	return sum, nil
}

// lookupAll asks server for name's A records with miekg/dns (over TCP, so
// that large answers are whole) and returns how many there are.
func lookupAll(server, name string) (int, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return 0, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	n := 0
	for _, rr := range r.Answer {
		if _, ok := rr.(*dns.A); ok {
			n++
		}
	}
	return n, nil
}

// backends are the TCP listeners standing for one Service's pods for one
// scenario: backend i listens on backendAddr(subnet, i):port and records
// every accepted connection (the ground truth of balance).
type backends struct {
	port   int
	subnet int
	begin  time.Time
	lns    []net.Listener
	wg     sync.WaitGroup
	// conns counts each backend's accepted connections, for the live
	// load variant's exporter.
	conns []atomic.Int64

	mu     sync.Mutex
	events []event
}

// podIP is the pod address of backend i of pod set subnet; backendAddr is
// where its listener is: a Pod with a loopback IP is accepted but never
// reaches its EndpointSlice (EndpointSlice validation rejects
// 127.0.0.0/8), so pods get ordinary addresses and the clients' dialers
// map 10.244.a.b to 127.244.a.b.
func podIP(subnet, i int) string { return fmt.Sprintf("10.244.%d.%d", subnet, i+1) }

func backendAddr(subnet, i int) string { return fmt.Sprintf("127.244.%d.%d", subnet, i+1) }

// mapToBackend maps a pod address to its listener address.
func mapToBackend(a netip.Addr) (netip.Addr, bool) {
	a = a.Unmap()
	if !a.Is4() {
		return a, false
	}
	b := a.As4()
	if b[0] != 10 || b[1] != 244 {
		return a, false
	}
	b[0] = 127
	return netip.AddrFrom4(b), true
}

// startBackends listens on n addresses of subnet, all on one free port.
func startBackends(t *testing.T, subnet, n int, begin time.Time) *backends {
	t.Helper()
	var lastErr error
	for range 10 {
		first, err := net.Listen("tcp", net.JoinHostPort(backendAddr(subnet, 0), "0"))
		if err != nil {
			t.Fatal(err)
		}
		bk := &backends{port: first.Addr().(*net.TCPAddr).Port, subnet: subnet, begin: begin, lns: []net.Listener{first}, conns: make([]atomic.Int64, n)}
		for i := 1; i < n; i++ {
			ln, err := net.Listen("tcp", net.JoinHostPort(backendAddr(subnet, i), fmt.Sprint(bk.port)))
			if err != nil {
				lastErr = err
				break
			}
			bk.lns = append(bk.lns, ln)
		}
		if len(bk.lns) < n {
			for _, ln := range bk.lns {
				ln.Close()
			}
			continue
		}
		for i, ln := range bk.lns {
			bk.wg.Add(1)
			go bk.serve(i, ln)
		}
		t.Cleanup(bk.close)
		return bk
	}
	t.Fatalf("no common free port for %d backends of subnet %d: %v", n, subnet, lastErr)
	return nil
}

func (bk *backends) serve(i int, ln net.Listener) {
	defer bk.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		at := time.Since(bk.begin)
		var from netip.Addr
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			from = a.AddrPort().Addr().Unmap()
		}
		c.Close()
		bk.conns[i].Add(1)
		bk.mu.Lock()
		bk.events = append(bk.events, event{at: at, backend: i, from: from})
		bk.mu.Unlock()
	}
}

func (bk *backends) close() {
	for _, ln := range bk.lns {
		ln.Close()
	}
	bk.wg.Wait()
}

func (bk *backends) snapshot() []event {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	return append([]event(nil), bk.events...)
}

// goClient is one client host using Go's pure resolver: from its own
// source address src it asks server for name (A and AAAA, as net.Dial
// does), connects to the first address of the (RFC 6724 sorted) answer,
// closes, sleeps pause, and again, until ctx ends.
func goClient(ctx context.Context, src netip.Addr, server, name string, port int, pause time.Duration, errs *atomic.Int64) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		if strings.HasPrefix(network, "tcp") {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		}
		return d.DialContext(ctx, network, server)
	}}
	dialer := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	// Hosts start out of step, as real ones are: started together, every
	// host would ask at the same instants for the whole run.
	select {
	case <-ctx.Done():
	case <-time.After(rand.N(pause)):
	}
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := r.LookupNetIP(lctx, "ip", name)
		cancel()
		if err == nil && len(addrs) > 0 {
			if dst, ok := mapToBackend(addrs[0]); ok {
				c, err := dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, uint16(port)).String())
				if err == nil {
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				} else if ctx.Err() == nil {
					errs.Add(1)
				}
			} else {
				errs.Add(1)
			}
		} else if ctx.Err() == nil {
			errs.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

var gaiLine = regexp.MustCompile(`ok=(\d+) lookup_errors=(\d+) connect_errors=(\d+) other=(\d+)`)

// glibcErrors parses the getaddrinfo program's summary: its failed
// lookups and connections.
func glibcErrors(out string) (int, error) {
	m := gaiLine.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no summary in %q", out)
	}
	var ok, le, ce, other int
	fmt.Sscan(m[1]+" "+m[2]+" "+m[3]+" "+m[4], &ok, &le, &ce, &other)
	return le + ce + other, nil
}
