// Package admin serves hdns's HTTP side for operators in two handlers: one
// for monitoring (Prometheus metrics, liveness, readiness) and one for
// debugging (the explanation of an answer, and optionally Go's profiles),
// which reveals the cluster's layout and so listens apart.
//
// It reads the answering side (answer.Responder) and answers nothing over
// DNS itself: it must not import the server's socket or forwarding
// packages.
package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/topology"
)

// HTTPHandler serves hdns's operational endpoints, meant for the
// monitoring system and the kubelet:
//
//	/metrics        Prometheus metrics of gatherer
//	/healthz        200 while the process serves
//	/readyz         200 once the first zone snapshot is published, 503 before
//	                and once readiness drains
//
// It serves nothing that names Pods, nodes or zones beyond the metrics'
// labels, so that it may listen where monitoring reaches it.
//
// readiness may be nil: it then never drains.
func HTTPHandler(gatherer prometheus.Gatherer, r *answer.Responder, readiness *Readiness) http.Handler {
	snapshot := r.Snapshot
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if snapshot() == nil {
			http.Error(w, "zone not synced yet", http.StatusServiceUnavailable)
			return
		}
		if readiness.Draining() {
			http.Error(w, "stopping: lameduck", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

// DebugHandler serves the endpoints for an operator at the Pod itself:
//
//	/debug/explain  how r answers ?name=…&type=…&client=… (JSON), and
//	                where loc (nil: not said) finds the client
//	/debug/pprof/   Go's runtime profiles, only with profiling (they show
//	                the process's internals and cost CPU while they run)
//
// Explain lists every Service's Pods, nodes and zones, and profiles show
// memory: serve it only on an address that only operators reach (loopback,
// reached with kubectl port-forward), never next to HTTPHandler.
func DebugHandler(r *answer.Responder, profiling bool, loc ClientLocator) http.Handler {
	mux := http.NewServeMux()
	if profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /debug/explain", ExplainHandler(r, loc))
	return mux
}

// ClientLocator says where a DNS client is: topology.Locator.
type ClientLocator interface {
	Locate(netip.Addr) topology.Location
}

// ExplainHandler serves GET /debug/explain?name=…&type=A&client=IP as JSON.
// type defaults to A and client to the HTTP client's address. With loc,
// the explanation says where the client is.
func ExplainHandler(r *answer.Responder, loc ClientLocator) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		name := q.Get("name")
		if name == "" {
			http.Error(w, "name is required", http.StatusBadRequest)
			return
		}
		qtype := dns.TypeA
		if t := q.Get("type"); t != "" {
			var ok bool
			if qtype, ok = dns.StringToType[strings.ToUpper(t)]; !ok {
				http.Error(w, "unknown type "+t, http.StatusBadRequest)
				return
			}
		}
		var client netip.Addr
		if c := q.Get("client"); c != "" {
			a, err := netip.ParseAddr(c)
			if err != nil {
				http.Error(w, "client: "+err.Error(), http.StatusBadRequest)
				return
			}
			client = a.Unmap()
		} else if ap, err := netip.ParseAddrPort(req.RemoteAddr); err == nil {
			client = ap.Addr().Unmap()
		}
		e, err := r.Explain(name, qtype, client)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if loc != nil {
			l := loc.Locate(client)
			e.ClientLocation = &answer.ExplainLocation{Node: l.Node, Zone: l.Zone, Region: l.Region, By: l.By.String()}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(e)
	}
}

// Readiness is the process's wish to receive traffic, beyond having a
// zone: Drain makes /readyz fail for good, so that the Pod leaves its
// Service's endpoints before it stops answering. Safe for concurrent use.
type Readiness struct{ draining atomic.Bool }

// Drain makes /readyz answer 503 from now on.
func (r *Readiness) Drain() { r.draining.Store(true) }

// Draining reports whether Drain was called; false for a nil Readiness.
func (r *Readiness) Draining() bool { return r != nil && r.draining.Load() }
