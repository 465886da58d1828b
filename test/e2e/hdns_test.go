//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/testproc"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// This file holds the helpers every hdns scenario uses: building the hdns
// binary once per test binary, running it against a control plane, and
// asking it questions with miekg/dns and with the real dig, polling until
// the answer converges.

const (
	// answerTimeout bounds how long a scenario waits for an answer to
	// converge after the change that causes it.
	answerTimeout = 10 * time.Second
	// answerPoll is the interval between two polls of an answer.
	answerPoll = 50 * time.Millisecond
	// startTimeout bounds an hdns start, up to /readyz answering 200.
	startTimeout = 30 * time.Second
	// ttl is the --ttl the scenarios start hdns with.
	ttl = "5s"
	// defaultTTL is hdns's TTL without --ttl.
	defaultTTL = 5 * time.Second
)

// hdnsBuild is the hdns binary, built from this work tree at most once
// per test binary.
var hdnsBuild = harness.Binary{Pkg: harness.HDNS}

func TestMain(m *testing.M) {
	code := m.Run()
	hdnsBuild.Remove()
	lsBackendBuild.Remove()
	os.Exit(code)
}

// hdnsBinary returns the path of the hdns binary built from this work tree,
// building it on first use. It fails t when the build fails.
func hdnsBinary(t testing.TB) string { return hdnsBuild.Path(t) }

// hdnsProcess is a running hdns binary. DNS, HTTP and Admin are its
// loopback addresses (host:port) of --listen, --http-listen and
// --admin-listen; DNS serves both UDP and TCP.
type hdnsProcess struct {
	DNS, HTTP, Admin string
	// TTL is the TTL of every record hdns answers with (its --ttl).
	TTL uint32

	p *testproc.Proc
}

// startHDNS runs hdns with args plus --listen (unless args set it),
// --http-listen and --admin-listen on free loopback ports (args must not
// set those two), waits until it logs where it
// serves and /readyz answers 200, and stops it at the end of t. It fails t
// when hdns exits or is not ready within startTimeout, and when it exits
// before the end of t; on failure its output is logged.
func startHDNS(t *testing.T, args ...string) *hdnsProcess {
	t.Helper()
	bin := hdnsBinary(t)
	ttl := defaultTTL
	if v := flagValues(args, "ttl"); len(v) > 0 {
		d, err := time.ParseDuration(v[len(v)-1])
		if err != nil {
			t.Fatalf("hdns --ttl %q: %v", v[len(v)-1], err)
		}
		ttl = d
	}
	args = append(slices.Clone(args), "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	if len(flagValues(args, "listen")) == 0 {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	h := &hdnsProcess{TTL: uint32(ttl / time.Second), p: testproc.Start(t, "hdns", exec.Command(bin, args...))}
	begin := time.Now()
	m, err := h.p.WaitLine(testproc.HDNSServing, startTimeout)
	if err != nil {
		t.Fatal(err)
	}
	h.DNS, h.HTTP = m[1], m[2]
	if m, err = h.p.WaitLine(testproc.HDNSAdmin, time.Second); err != nil {
		t.Fatal(err)
	}
	h.Admin = m[1]
	deadline := time.After(startTimeout - time.Since(begin))
	for {
		code, _, err := h.get("/readyz")
		if err == nil && code == http.StatusOK {
			return h
		}
		select {
		case <-h.p.Exited():
			t.Fatalf("hdns exited before /readyz answered 200: %v", h.p.Cmd.ProcessState)
		case <-deadline:
			t.Fatalf("hdns /readyz not 200 within %v: last %d, %v", startTimeout, code, err)
		case <-time.After(answerPoll):
		}
	}
}

// output is what hdns has logged so far.
func (h *hdnsProcess) output() string { return h.p.Output() }

// get performs one GET on hdns's HTTP side (--http-listen: metrics and
// probes), bounded to 5s, and returns the status code and body.
func (h *hdnsProcess) get(path string) (int, string, error) { return httpGet(h.HTTP, path) }

// debugGet is get on hdns's debug side (--admin-listen: explain).
func (h *hdnsProcess) debugGet(path string) (int, string, error) { return httpGet(h.Admin, path) }

// httpGet performs one GET of path on addr, bounded to 5s, and returns the
// status code and body.
func httpGet(addr, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// metric returns the value of the sample named exactly series (name plus
// labels as /metrics prints them, e.g. `x_total{source="kubernetes"}`) from
// hdns's /metrics.
func (h *hdnsProcess) metric(series string) (float64, error) {
	code, body, err := h.get("/metrics")
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: HTTP %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				return 0, fmt.Errorf("metric %s: parse %q: %w", series, rest, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("metric %s not in /metrics", series)
}

// dnsQuery is one question to hdns.
type dnsQuery struct {
	name  string
	qtype uint16
	tcp   bool
}

// q is a UDP question for name (made fully qualified) and qtype.
func q(name string, qtype uint16) dnsQuery { return dnsQuery{name: dns.Fqdn(name), qtype: qtype} }

// overTCP returns the same question asked over TCP.
func (d dnsQuery) overTCP() dnsQuery { d.tcp = true; return d }

func (d dnsQuery) String() string {
	proto := "udp"
	if d.tcp {
		proto = "tcp"
	}
	return fmt.Sprintf("%s %s/%s", d.name, dns.TypeToString[d.qtype], proto)
}

// reply is a DNS response reduced to what scenarios compare. Records are
// rendered "OWNER TYPE RDATA" (no TTL or class) and sorted, since the order
// of records is a policy's business, not these tests'.
type reply struct {
	Rcode     string
	Answer    []string
	Extra     []string // without the OPT record
	AA, TC    bool
	AnswerTTL []uint32
}

func (r reply) String() string {
	return fmt.Sprintf("%s aa=%t tc=%t answer(%d)=[%s] extra(%d)=[%s]", r.Rcode, r.AA, r.TC,
		len(r.Answer), strings.Join(r.Answer, "; "), len(r.Extra), strings.Join(r.Extra, "; "))
}

// rrText renders rr as "OWNER TYPE RDATA", owner in lower case.
func rrText(rr dns.RR) string {
	f := strings.Fields(rr.String()) // owner ttl class type rdata...
	return strings.ToLower(f[0]) + " " + strings.Join(f[3:], " ")
}

func toReply(m *dns.Msg) reply {
	r := reply{Rcode: dns.RcodeToString[m.Rcode], AA: m.Authoritative, TC: m.Truncated}
	for _, rr := range m.Answer {
		r.Answer = append(r.Answer, rrText(rr))
		r.AnswerTTL = append(r.AnswerTTL, rr.Header().Ttl)
	}
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			r.Extra = append(r.Extra, rrText(rr))
		}
	}
	slices.Sort(r.Answer)
	slices.Sort(r.Extra)
	return r
}

// exchange asks hdns one question with miekg/dns (EDNS buffer 1232, RD off,
// 2s timeout) and returns the raw response.
func (h *hdnsProcess) exchange(d dnsQuery) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(d.name, d.qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	if d.tcp {
		c.Net = "tcp"
	}
	resp, _, err := c.Exchange(m, h.DNS)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	return resp, nil
}

// ask is exchange reduced to a reply.
func (h *hdnsProcess) ask(d dnsQuery) (reply, error) {
	m, err := h.exchange(d)
	if err != nil {
		return reply{}, err
	}
	return toReply(m), nil
}

// want is the expected reply to a question: its rcode and its exact answer
// set; the additional section is compared only when extra is non-nil.
type want struct {
	rcode  int
	answer []string
	extra  []string
}

// matches reports whether r is what w expects from a server answering with
// ttl. Every converged in-zone answer is authoritative, not truncated, and
// all its records carry ttl.
func (w want) matches(r reply, ttl uint32) bool {
	if r.Rcode != dns.RcodeToString[w.rcode] || !r.AA || r.TC {
		return false
	}
	if !slices.Equal(r.Answer, sorted(w.answer)) {
		return false
	}
	if w.extra != nil && !slices.Equal(r.Extra, sorted(w.extra)) {
		return false
	}
	for _, t := range r.AnswerTTL {
		if t != ttl {
			return false
		}
	}
	return true
}

func (w want) String() string {
	extra := "(not checked)"
	if w.extra != nil {
		extra = fmt.Sprintf("(%d)=[%s]", len(w.extra), strings.Join(sorted(w.extra), "; "))
	}
	return fmt.Sprintf("%s aa=true tc=false answer(%d)=[%s] extra%s", dns.RcodeToString[w.rcode],
		len(w.answer), strings.Join(sorted(w.answer), "; "), extra)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// answers is a NOERROR expectation with the given answer records.
func answers(rrs ...string) want { return want{rcode: dns.RcodeSuccess, answer: rrs} }

// nxdomain expects NXDOMAIN with no answer.
func nxdomain() want { return want{rcode: dns.RcodeNameError} }

// rrs renders records of owner and type, one per rdata, as reply does.
func rrs(owner, typ string, rdata ...string) []string {
	out := make([]string, len(rdata))
	for i, rd := range rdata {
		out[i] = dns.Fqdn(owner) + " " + typ + " " + rd
	}
	return out
}

// await polls d every answerPoll until hdns's reply matches w, for at most
// answerTimeout, and returns the matching reply. It fails t with the last
// reply (or error) seen.
func (h *hdnsProcess) await(t *testing.T, d dnsQuery, w want) reply {
	t.Helper()
	return h.awaitWithin(t, d, w, answerTimeout)
}

func (h *hdnsProcess) awaitWithin(t *testing.T, d dnsQuery, w want, timeout time.Duration) reply {
	t.Helper()
	begin := time.Now()
	var (
		last    reply
		lastErr error
	)
	for {
		last, lastErr = h.ask(d)
		if lastErr == nil && w.matches(last, h.TTL) {
			return last
		}
		if time.Since(begin) > timeout {
			if lastErr != nil {
				t.Fatalf("%s: no matching answer within %v; last error: %v\nwant %v", d, timeout, lastErr, w)
			}
			t.Fatalf("%s: no matching answer within %v\n got %v ttls=%v\nwant %v ttl=%d", d, timeout, last, last.AnswerTTL, w, h.TTL)
		}
		time.Sleep(answerPoll)
	}
}

// dig runs the real dig against hdns and returns the status and the answer
// records rendered as reply renders them, sorted. args are dig's query
// arguments, e.g. {"web.awx.svc.cluster.local.", "SRV"} or {"-x", ip};
// "+tcp" may be among them.
func (h *hdnsProcess) dig(args ...string) (status string, answer []string, err error) {
	host, port, err := net.SplitHostPort(h.DNS)
	if err != nil {
		return "", nil, err
	}
	full := append([]string{"@" + host, "-p", port, "+norec", "+time=2", "+tries=1", "+noall", "+answer", "+comments"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dig", full...).CombinedOutput()
	if err != nil {
		return "", nil, fmt.Errorf("dig %s: %w\n%s", strings.Join(full, " "), err, out)
	}
	statusRE := regexp.MustCompile(`status: (\w+)`)
	for _, line := range strings.Split(string(out), "\n") {
		if m := statusRE.FindStringSubmatch(line); m != nil {
			status = m[1]
		}
		if f := strings.Fields(line); len(f) >= 5 && !strings.HasPrefix(line, ";") {
			answer = append(answer, strings.ToLower(f[0])+" "+strings.Join(f[3:], " "))
		}
	}
	if status == "" {
		return "", nil, fmt.Errorf("dig %s: no status in output:\n%s", strings.Join(full, " "), out)
	}
	slices.Sort(answer)
	return status, answer, nil
}

// awaitDig is await with dig as the client: it polls until dig reports
// w's rcode and exactly w's answer records (w.extra is ignored).
func (h *hdnsProcess) awaitDig(t *testing.T, w want, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is not installed: apt-get install bind9-dnsutils")
	}
	begin := time.Now()
	for {
		status, answer, err := h.dig(args...)
		if err == nil && status == dns.RcodeToString[w.rcode] && slices.Equal(answer, sorted(w.answer)) {
			return
		}
		if time.Since(begin) > answerTimeout {
			t.Fatalf("dig %s: no matching answer within %v\n got %s [%s] (error: %v)\nwant %v",
				strings.Join(args, " "), answerTimeout, status, strings.Join(answer, "; "), err, w)
		}
		time.Sleep(answerPoll)
	}
}

// createPods creates the pods with CreateReadyPod using at most workers
// concurrent creators, and returns the first error (after the others
// finished).
func createPods(ctx context.Context, cp *harness.ControlPlane, ns string, pods []harness.PodOptions, workers int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan harness.PodOptions)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Go(func() {
			for o := range jobs {
				if _, err := cp.CreateReadyPod(ctx, ns, o); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		})
	}
feed:
	for _, o := range pods {
		select {
		case jobs <- o:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first == nil {
		// Only the caller's context can have ended: cancel runs on error.
		first = ctx.Err()
	}
	return first
}

// headless returns a headless Service selecting app=name with the given
// ports.
func headless(name string, ports ...corev1.ServicePort) *corev1.Service {
	svc := fixture.Service{Name: name, Headless: true, Selector: map[string]string{"app": name}}.API()
	svc.Spec.Ports = ports
	return svc
}

// flagValues returns the values of --name (or -name) in args, in order,
// whether given as "--name=v" or "--name v".
func flagValues(args []string, name string) []string {
	var vals []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if a == args[i] {
			continue // not a flag
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			vals = append(vals, v)
		} else if a == name && i+1 < len(args) {
			vals = append(vals, args[i+1])
			i++
		}
	}
	return vals
}

// withoutFlags returns args without the flags named (either form).
func withoutFlags(args []string, names ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		name, _, hasValue := strings.Cut(a, "=")
		if a == args[i] || !slices.Contains(names, name) {
			out = append(out, args[i])
			continue
		}
		if !hasValue {
			i++ // the value is the next argument
		}
	}
	return out
}
