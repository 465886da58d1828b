//go:build bench

package balance

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hdns-dev/hdns/internal/promtest"
)

// liveLoad is the live load variant (HDNS_BENCH_LIVE): every backend
// exports how many connections it has accepted as the counter
// connectionsMetric{namespace, pod}, a real Prometheus scrapes them every
// scrape, and every hdns replica polls query from it every poll
// (--prometheus-url, --load-query, --load-interval). Prometheus is the one
// view of the backends' load that every replica reads alike.
type liveLoad struct {
	query string
	// count makes least-loaded read the values as counts
	// (least-loaded=count) instead of levels.
	count         bool
	poll, scrape  time.Duration
	exporter      *connExporter
	prometheusURL string
}

// connectionsMetric is the counter each backend exports: the clients
// close each connection at once, so its rate is the load there is.
const connectionsMetric = "hdns_bench_connections_total"

// defaultLiveQuery is the backends' connection rate over 5 s.
const defaultLiveQuery = "rate(" + connectionsMetric + "[5s])"

// variantConfig reads the settings of the variants beside the base model:
//
//	HDNS_BENCH_LIVE=1 (or a PromQL query over hdns_bench_connections_total;
//	    1 means rate(hdns_bench_connections_total[5s])): the live load variant
//	HDNS_BENCH_LIVE_KIND (level): count makes every least-loaded step
//	    least-loaded=count, which reads the values as counts
//	HDNS_BENCH_LIVE_POLL (1s): hdns's --load-interval
//	HDNS_BENCH_LIVE_SCRAPE (1s): Prometheus's scrape interval
//	HDNS_BENCH_PREFETCH (e.g. "1 1m 10%"): CoreDNS cache's prefetch arguments;
//	    needs HDNS_BENCH_TTL ≥ 2
func variantConfig(t *testing.T, c *config) {
	duration := func(name string, def time.Duration) time.Duration {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a duration > 0", name, v)
		}
		return d
	}
	if v := os.Getenv("HDNS_BENCH_LIVE"); v != "" && v != "0" {
		c.live = &liveLoad{query: v, poll: duration("HDNS_BENCH_LIVE_POLL", time.Second),
			scrape: duration("HDNS_BENCH_LIVE_SCRAPE", time.Second)}
		if v == "1" {
			c.live.query = defaultLiveQuery
		}
		switch k := os.Getenv("HDNS_BENCH_LIVE_KIND"); k {
		case "", "level":
		case "count":
			c.live.count = true
		default:
			t.Fatalf("HDNS_BENCH_LIVE_KIND=%q: want level or count", k)
		}
	}
	c.prefetch = os.Getenv("HDNS_BENCH_PREFETCH")
	if c.prefetch != "" && c.ttl < 2 {
		// The cache prefetches an entry when its whole seconds left are at
		// most ceil(percentage × TTL): with a TTL of 1 s that is the entry's
		// whole life, so every hit would refresh it and the cache would pass
		// its clients' questions through instead of replaying one answer.
		t.Fatalf("HDNS_BENCH_PREFETCH=%q needs HDNS_BENCH_TTL ≥ 2 (5 as in a cluster): with TTL 1 s CoreDNS refreshes the entry on every hit", c.prefetch)
	}
}

// start runs the exporter and Prometheus; a nil liveLoad starts nothing.
func (l *liveLoad) start(t *testing.T) {
	if l == nil {
		return
	}
	l.exporter = startConnExporter(t)
	l.prometheusURL = promtest.Start(t, l.scrape, l.exporter.addr).URL
}

// hdnsArgs are the flags that make an hdns poll the live load.
func (l *liveLoad) hdnsArgs() []string {
	if l == nil {
		return nil
	}
	return []string{"--prometheus-url", l.prometheusURL, "--load-query", l.query, "--load-interval", l.poll.String()}
}

// export adds bk's backends to what Prometheus scrapes.
func (l *liveLoad) export(bk *backends) {
	if l != nil {
		l.exporter.add(bk)
	}
}

// policyAnnotation is the hdns.dev/policy annotation of a Service whose
// policy is spec: least-loaded=count in the count variant.
func (c config) policyAnnotation(spec string) string {
	if c.live == nil || !c.live.count {
		return spec
	}
	return strings.ReplaceAll(spec, "least-loaded", "least-loaded=count")
}

// describe is the variant's line in the report's model.
func (c config) describeVariants() string {
	var b strings.Builder
	if l := c.live; l != nil {
		fmt.Fprintf(&b, "\nLive load: each backend exports its accepted connections as %s{namespace,pod}; a real Prometheus scrapes them every %v;\n"+
			"every hdns replica polls %q every %v (--prometheus-url, --load-query, --load-interval).", connectionsMetric, l.scrape, l.query, l.poll)
		if l.count {
			b.WriteString(" least-loaded reads them as counts: least-loaded=count.")
		}
	}
	if c.prefetch != "" {
		fmt.Fprintf(&b, "\nCaches prefetch: cache { prefetch %s }.", c.prefetch)
	}
	return b.String()
}

// prefetchLine is the cache block's prefetch directive, "" without one.
func (c config) prefetchLine() string {
	if c.prefetch == "" {
		return ""
	}
	return "        prefetch " + c.prefetch + "\n"
}

// connExporter serves every exported backend's connection count in the
// Prometheus text format on a loopback address.
type connExporter struct {
	addr string
	mu   sync.Mutex
	bks  []*backends
}

func startConnExporter(t *testing.T) *connExporter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &connExporter{addr: ln.Addr().String()}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return e
}

func (e *connExporter) add(bk *backends) {
	e.mu.Lock()
	e.bks = append(e.bks, bk)
	e.mu.Unlock()
}

func (e *connExporter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	bks := append([]*backends(nil), e.bks...)
	e.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE %s counter\n", connectionsMetric)
	for _, bk := range bks {
		for i := range bk.conns {
			fmt.Fprintf(&b, "%s{namespace=%q,pod=%q} %d\n", connectionsMetric, namespace, podOptions(bk.subnet, i).Name, bk.conns[i].Load())
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, b.String())
}
