//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/internal/promtest"
	"github.com/hdns-dev/hdns/internal/testproc"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// This file proves live load from Prometheus end to end: a real
// Prometheus (the Debian package) on 127.0.0.1 scrapes real backend
// processes (loadsource_backend, one per Pod, each on its own loopback
// address) whose in-flight gauges are labelled with the namespace and name
// of Pods in the real API server, and hdns, watching that API server and
// polling that Prometheus, steers "least-loaded, first=1" answers away
// from the backend the test makes busy with real held requests.

const (
	// lsScrapeInterval is Prometheus's scrape interval.
	lsScrapeInterval = time.Second
	// lsPollInterval is hdns's --load-interval.
	lsPollInterval = 500 * time.Millisecond
	// lsMaxAge is hdns's --load-max-age: how long a polled value counts.
	lsMaxAge = 3 * lsPollInterval
	// lsBound is the bound on how long a busy backend keeps coming
	// first after its gauge went up: two scrape+poll intervals.
	lsBound = 2 * (lsScrapeInterval + lsPollInterval)
	// lsMargin absorbs scrape and query latency on a loaded 2-core machine.
	lsMargin = time.Second
	// lsBusyRequests is how many slow requests the test holds open at the
	// busy backend.
	lsBusyRequests = 30
	// lsWindow is the number of consecutive answers in which the busy pod
	// may come first at most lsWindowMax times once hdns knows it is busy.
	lsWindow, lsWindowMax = 60, 2
)

// lsPod is one Pod of the test's Service and the backend process that
// stands for its application: ip is the Pod IP in the API server (which
// hdns answers with), listen the loopback address its backend listens on.
type lsPod struct {
	name, ip, listen string
}

// TestLoadSource starts its own control plane, three ready Pods behind a
// headless Service annotated "least-loaded, first=1", one backend process
// per Pod, a real Prometheus scraping the backends every lsScrapeInterval,
// and hdns polling it every lsPollInterval. It proves that
//   - with equal (idle) load the pod to be made busy comes first in a fair
//     share of answers (at least 8 of 60; a third is expected);
//   - once the test holds lsBusyRequests requests open at that pod's
//     backend, hdns sees the busy value and the pod comes first in at most
//     lsWindowMax of lsWindow answers, both within lsBound (+ lsMargin) of
//     the gauge going up, and it stays away while busy;
//   - with Prometheus stopped, hdns keeps answering every query (no
//     SERVFAIL, no empty answer) for 3 × lsMaxAge, hdns_load_source_up
//     drops to 0, the polled values go stale and the handout ledger alone
//     ranks the pods again.
func TestLoadSource(t *testing.T) {
	const (
		ns  = "loadsrc"
		svc = "app"
		// name is the question of every query: one A record per answer.
		name = svc + "." + ns + ".svc.cluster.local."
	)
	pods := []lsPod{
		{"app-0", "10.244.61.10", "127.0.0.2:0"},
		{"app-1", "10.244.61.11", "127.0.0.3:0"},
		{"app-2", "10.244.61.12", "127.0.0.4:0"},
	}
	busy := pods[1]

	cp := harness.Start(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	if _, err := cp.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	service := headless(svc)
	service.Annotations = map[string]string{policyAnnotation: "least-loaded, first=1"}
	createService(ctx, t, cp, ns, service)
	var opts []harness.PodOptions
	for _, p := range pods {
		opts = append(opts, harness.PodOptions{Name: p.name, Labels: map[string]string{"app": svc}, IPv4: p.ip})
	}
	if err := createPods(ctx, cp, ns, opts, len(opts)); err != nil {
		t.Fatal(err)
	}

	// One backend process per Pod, labelled with the Pod's namespace and
	// name, on its own loopback address.
	bin := buildBackend(t)
	backends := map[string]*lsBackend{}
	var targets []string
	for _, p := range pods {
		b := startBackend(t, bin, p.listen, ns, p.name)
		backends[p.name] = b
		targets = append(targets, b.addr)
	}
	prom := startRealPrometheus(t, targets)
	h := startHDNS(t, "--kubeconfig", cp.KubeconfigPath, "--ttl", ttl,
		"--prometheus-url", prom.URL, "--load-query", "inflight",
		"--load-interval", lsPollInterval.String(), "--load-max-age", lsMaxAge.String())

	// first asks hdns name A once over UDP (or TCP) and returns the one
	// address of its NOERROR answer; anything else is an error.
	first := func(tcp bool) (string, error) {
		d := q(name, dns.TypeA)
		if tcp {
			d = d.overTCP()
		}
		m, err := h.exchange(d)
		if err != nil {
			return "", err
		}
		got := addrsOf(m)
		if m.Rcode != dns.RcodeSuccess || len(got) != 1 {
			return "", fmt.Errorf("%s: %s with answer %v, want NOERROR with one address", d, dns.RcodeToString[m.Rcode], got)
		}
		return got[0], nil
	}
	// countBusyFirst asks n questions, 5 ms apart, and counts the answers
	// naming the busy pod. It fails t on any error.
	countBusyFirst := func(n int) int {
		t.Helper()
		c := 0
		for range n {
			ip, err := first(false)
			if err != nil {
				t.Fatal(err)
			}
			if ip == busy.ip {
				c++
			}
			time.Sleep(5 * time.Millisecond)
		}
		return c
	}

	// Idle: every pod's value (0) has been polled and is fresh; least-loaded
	// then ranks by the handout ledger and the busy-to-be pod comes first
	// about a third of the time.
	awaitCond(t, "hdns polled a fresh value of every pod", 30*time.Second, func() (bool, string) {
		e, err := explainLoad(h, name)
		if err != nil {
			return false, err.Error()
		}
		ok := len(e.Candidates) == len(pods)
		for _, c := range e.Candidates {
			ok = ok && c.Live != nil && *c.Live == 0 && c.LiveFresh
		}
		return ok, e.String()
	})
	if n := countBusyFirst(lsWindow); n < 8 {
		t.Fatalf("equal load: %s first in %d of %d answers, want about %d", busy.name, n, lsWindow, lsWindow/len(pods))
	} else {
		t.Logf("equal load: %s first in %d of %d answers", busy.name, n, lsWindow)
	}
	if up, err := h.metric("hdns_load_source_up"); err != nil || up != 1 {
		t.Fatalf("hdns_load_source_up = %v (%v) with Prometheus running, want 1", up, err)
	}

	// Busy: hold lsBusyRequests requests open at the busy pod's backend.
	// Its gauge starts going up at opened; the test waits until the
	// backend's own /metrics shows all of them (full), so that the load is
	// known to be real before hdns is asked about it.
	opened := time.Now()
	release := holdRequests(t, backends[busy.name].addr, lsBusyRequests)
	t.Cleanup(release)
	awaitCond(t, busy.name+"'s backend reports its held requests", 10*time.Second, func() (bool, string) {
		v, err := backends[busy.name].inflight()
		if err != nil {
			return false, err.Error()
		}
		return v == lsBusyRequests, fmt.Sprintf("inflight %v", v)
	})
	full := time.Now()
	t.Logf("%d requests held at %s's backend; its gauge showed all of them %v after they were opened",
		lsBusyRequests, busy.name, full.Sub(opened).Round(time.Millisecond))

	// Then ask continuously, 5 ms apart, and read /debug/explain every
	// 20 ms. Every time is measured from opened, when the gauge started
	// going up:
	//   - seen is when explain first shows a fresh busy value (> 0: a
	//     scrape may catch the gauge while it rises), seenFull when it
	//     shows the full value;
	//   - moved is the time of the first answer of the first run of
	//     lsWindow consecutive answers in which the busy pod comes first at
	//     most lsWindowMax times. While hdns does not know, the pod comes
	//     first about every third answer, so such a run starts at most a few
	//     answers (tens of milliseconds) before hdns knows; the window's end
	//     is logged too, as an upper bound.
	type answer struct {
		at   time.Time
		busy bool
	}
	var (
		asked           []answer
		seen, seenFull  time.Time
		seenValue       float64
		moved, movedEnd time.Time
		lastExplain     time.Time
		lastExplained   string
	)
	giveUp := opened.Add(lsBound + lsMargin + 10*time.Second)
	for moved.IsZero() || seenFull.IsZero() {
		if time.Now().After(giveUp) {
			t.Fatalf("busy %s: not moved away within %v (value seen after %v, full value after %v, moved after %v); last explain: %s",
				busy.name, giveUp.Sub(opened), since(opened, seen), since(opened, seenFull), since(opened, moved), lastExplained)
		}
		at := time.Now()
		ip, err := first(false)
		if err != nil {
			t.Fatal(err)
		}
		asked = append(asked, answer{at, ip == busy.ip})
		if moved.IsZero() && len(asked) >= lsWindow {
			run := asked[len(asked)-lsWindow:]
			n := 0
			for _, a := range run {
				if a.busy {
					n++
				}
			}
			if n <= lsWindowMax {
				moved, movedEnd = run[0].at, at
			}
		}
		if seenFull.IsZero() && time.Since(lastExplain) >= 20*time.Millisecond {
			lastExplain = time.Now()
			e, err := explainLoad(h, name)
			if err != nil {
				t.Fatal(err)
			}
			lastExplained = e.String()
			if c := e.candidate(busy.name); c != nil && c.Live != nil && *c.Live > 0 && c.LiveFresh {
				if seen.IsZero() {
					seen, seenValue = lastExplain, *c.Live
				}
				if *c.Live >= lsBusyRequests {
					seenFull = lastExplain
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("busy %s, from its gauge going up: hdns saw %g after %v and the full %d after %v; answers moved away after %v "+
		"(%d-answer window ended after %v; bound %v + margin %v)", busy.name, seenValue, seen.Sub(opened).Round(time.Millisecond),
		lsBusyRequests, seenFull.Sub(opened).Round(time.Millisecond), moved.Sub(opened).Round(time.Millisecond),
		lsWindow, movedEnd.Sub(opened).Round(time.Millisecond), lsBound, lsMargin)
	if d := seen.Sub(opened); d > lsBound+lsMargin {
		t.Errorf("busy %s: hdns saw its load %v after its gauge went up, want ≤ %v + %v", busy.name, d, lsBound, lsMargin)
	}
	if d := seenFull.Sub(full); d > lsBound+lsMargin {
		t.Errorf("busy %s: hdns saw its full load %v after its gauge reached it, want ≤ %v + %v", busy.name, d, lsBound, lsMargin)
	}
	if d := moved.Sub(opened); d > lsBound+lsMargin {
		t.Errorf("busy %s: answers moved away %v after its gauge went up, want ≤ %v + %v", busy.name, d, lsBound, lsMargin)
	}
	// And it stays away while busy.
	if n := countBusyFirst(lsWindow); n > lsWindowMax {
		t.Errorf("busy %s: first in %d of %d further answers, want ≤ %d", busy.name, n, lsWindow, lsWindowMax)
	}
	if up, err := h.metric("hdns_load_source_up"); err != nil || up != 1 {
		t.Errorf("hdns_load_source_up = %v (%v) with Prometheus running, want 1", up, err)
	}

	// Prometheus stops. For 3 × lsMaxAge hdns is asked every 10 ms, UDP and
	// TCP in turn: every query must get NOERROR with one address (no
	// SERVFAIL, no timeout, no empty answer), and hdns_load_source_up must
	// drop to 0.
	stopped := time.Now()
	if err := prom.Stop(); err != nil {
		t.Fatal(err)
	}
	var (
		queries, servfail, failed int
		firstFailure              string
		down                      time.Time
		lastMetric                time.Time
	)
	for end := time.Now().Add(3 * lsMaxAge); time.Now().Before(end); {
		_, err := first(queries%2 == 1)
		queries++
		switch {
		case err != nil && strings.Contains(err.Error(), "SERVFAIL"):
			servfail++
		case err != nil:
			failed++ // a timeout, another rcode or not exactly one address
		}
		if err != nil && firstFailure == "" {
			firstFailure = err.Error()
		}
		if down.IsZero() && time.Since(lastMetric) >= 50*time.Millisecond {
			lastMetric = time.Now()
			if v, err := h.metric("hdns_load_source_up"); err == nil && v == 0 {
				down = lastMetric
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("Prometheus stopped: %d queries over %v, %d SERVFAIL, %d other failures; hdns_load_source_up 0 after %v",
		queries, 3*lsMaxAge, servfail, failed, since(stopped, down))
	if servfail != 0 || failed != 0 {
		t.Errorf("Prometheus stopped: %d SERVFAIL and %d other failures in %d queries, want none; first: %s", servfail, failed, queries, firstFailure)
	}
	if queries < 100 {
		t.Errorf("Prometheus stopped: only %d queries asked, want ≥ 100", queries)
	}
	if down.IsZero() {
		t.Errorf("hdns_load_source_up not 0 within %v of Prometheus stopping", 3*lsMaxAge)
	}

	// By now every polled value is older than lsMaxAge: least-loaded ranks
	// by the handout ledger alone, so the pod hdns avoided while it knew is
	// back in rotation (first about every third answer once the ledger has
	// caught up), although its backend is still busy.
	e, err := explainLoad(h, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range e.Candidates {
		if c.LiveFresh {
			t.Errorf("Prometheus stopped %v ago: %s's value still fresh: %s", time.Since(stopped).Round(time.Millisecond), c.Pod, e)
		}
	}
	if n := countBusyFirst(30); n < 5 {
		t.Errorf("Prometheus down, values stale: %s first in %d of 30 answers, want it back in rotation (about 10)", busy.name, n)
	} else {
		t.Logf("Prometheus down, values stale: %s first in %d of 30 answers", busy.name, n)
	}
}

// since is at - from, or "never" when at is zero.
func since(from, at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(from).Round(time.Millisecond).String()
}

// loadExplanation is the part of GET /debug/explain that shows live load.
type loadExplanation struct {
	Rcode      string          `json:"rcode"`
	Policy     string          `json:"policy"`
	Candidates []loadCandidate `json:"candidates"`
	Answer     []string        `json:"answer"`
}

// loadCandidate is one candidate of a loadExplanation: its handout ledger
// entry, its last polled live value (nil when it has none), that value's
// age and freshness, and the score least-loaded compares.
type loadCandidate struct {
	Pod       string   `json:"pod"`
	Load      float64  `json:"load"`
	Live      *float64 `json:"live"`
	LiveAge   *float64 `json:"liveAgeSeconds"`
	LiveFresh bool     `json:"liveFresh"`
	Score     float64  `json:"score"`
}

// candidate returns the candidate of pod, or nil.
func (e *loadExplanation) candidate(pod string) *loadCandidate {
	for i := range e.Candidates {
		if e.Candidates[i].Pod == pod {
			return &e.Candidates[i]
		}
	}
	return nil
}

func (e *loadExplanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s policy %q:", e.Rcode, e.Policy)
	for _, c := range e.Candidates {
		live := "none"
		if c.Live != nil {
			live = fmt.Sprintf("%g (age %.2fs, fresh %t)", *c.Live, *c.LiveAge, c.LiveFresh)
		}
		fmt.Fprintf(&b, " [%s ledger %.3f live %s score %.3f]", c.Pod, c.Load, live, c.Score)
	}
	fmt.Fprintf(&b, " answer %v", e.Answer)
	return b.String()
}

// explainLoad asks hdns's /debug/explain how it answers name A.
func explainLoad(h *hdnsProcess, name string) (*loadExplanation, error) {
	code, body, err := h.debugGet("/debug/explain?" + url.Values{"name": {name}, "type": {"A"}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("GET /debug/explain: %w", err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /debug/explain: HTTP %d: %s", code, body)
	}
	e := new(loadExplanation)
	if err := json.Unmarshal([]byte(body), e); err != nil {
		return nil, fmt.Errorf("GET /debug/explain: %w\n%s", err, body)
	}
	return e, nil
}

// lsBackendBuild is ./loadsource_backend, built at most once per test
// binary.
var lsBackendBuild = harness.Binary{Pkg: "github.com/hdns-dev/hdns/test/e2e/loadsource_backend", Tags: []string{"e2e"}}

// buildBackend returns the loadsource_backend binary, building it on first
// use.
func buildBackend(t *testing.T) string { return lsBackendBuild.Path(t) }

// lsBackend is a running loadsource_backend process; addr is where it
// serves (host:port).
type lsBackend struct {
	pod, addr string
	p         *testproc.Proc
}

var listeningLine = regexp.MustCompile(`^listening (\S+)$`)

// startBackend runs the backend binary bin on listen (a loopback host with
// port 0) for Pod ns/pod, waits until it says where it listens, and stops
// it at the end of t. It fails t when the backend exits or does not listen
// within 10 s, and when it exits before the end of t.
func startBackend(t *testing.T, bin, listen, ns, pod string) *lsBackend {
	t.Helper()
	b := &lsBackend{pod: pod, p: testproc.Start(t, "backend "+pod, exec.Command(bin, "-listen", listen, "-namespace", ns, "-pod", pod))}
	m, err := b.p.WaitLine(listeningLine, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b.addr = m[1]
	return b
}

// inflight reads the backend's own gauge from its /metrics (bounded to 2s).
func (b *lsBackend) inflight() (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("backend %s: %w", b.pod, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("backend %s: read /metrics: %w", b.pod, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "inflight{") {
			f := strings.Fields(line)
			var v float64
			if _, err := fmt.Sscan(f[len(f)-1], &v); err != nil {
				return 0, fmt.Errorf("backend %s: parse %q: %w", b.pod, line, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("backend %s: no inflight gauge in /metrics:\n%s", b.pod, body)
}

// holdRequests opens n concurrent GET /work requests to addr, each on its
// own connection, which the backend holds until the client goes away. The
// returned release (idempotent) cancels them and waits for the requesting
// goroutines; an error other than that cancellation fails t.
func holdRequests(t *testing.T, addr string, n int) (release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range n {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/work", nil)
			if err == nil {
				var resp *http.Response
				if resp, err = client.Do(req); err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil {
						err = fmt.Errorf("held request to %s ended before release: %s", addr, resp.Status)
					}
				}
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Errorf("held requests: %v", err)
			}
		})
	}
}

// realPrometheus is a running prometheus binary (internal/promtest).
type realPrometheus struct {
	*promtest.Server
}

// startRealPrometheus runs the Debian package's prometheus scraping
// targets every lsScrapeInterval (promtest.Start), and waits until it has
// scraped every target once: the query inflight returns one series per
// target.
func startRealPrometheus(t *testing.T, targets []string) *realPrometheus {
	t.Helper()
	p := &realPrometheus{promtest.Start(t, lsScrapeInterval, targets...)}
	awaitCond(t, "prometheus ready with every target scraped", 30*time.Second, func() (bool, string) {
		if p.Exited() {
			t.Fatalf("prometheus exited: %v", p.Stop())
		}
		n, err := p.series("inflight")
		if err != nil {
			return false, err.Error()
		}
		return n == len(targets), fmt.Sprintf("%d series of inflight, want %d", n, len(targets))
	})
	return p
}

// series runs the instant query expr and returns how many series it
// returned (bounded to 2s).
func (p *realPrometheus) series(expr string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		p.URL+"/api/v1/query?"+url.Values{"query": {expr}}.Encode(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("query %s: %w", expr, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("query %s: HTTP %s: %w", expr, resp.Status, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: status %q", expr, r.Status)
	}
	return len(r.Data.Result), nil
}
