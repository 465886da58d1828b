package server

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPHandler serves hdns's HTTP endpoints:
//
//	/metrics        Prometheus metrics of gatherer
//	/healthz        200 while the process serves
//	/readyz         200 once the first zone snapshot is published, 503 before
//	/debug/explain  how r answers ?name=…&type=…&client=… (JSON)
//	/debug/pprof/   Go's runtime profiles, only with profiling (they show
//	                the process's internals and cost CPU while they run)
func HTTPHandler(gatherer prometheus.Gatherer, r *Responder, profiling bool) http.Handler {
	snapshot := r.Snapshot
	mux := http.NewServeMux()
	if profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /debug/explain", ExplainHandler(r))
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if snapshot() == nil {
			http.Error(w, "zone not synced yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
