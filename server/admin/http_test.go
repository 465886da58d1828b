package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/zone"
)

// TestHTTPProfilingIsOptIn: /debug/pprof/ exists only with profiling.
func TestHTTPProfilingIsOptIn(t *testing.T) {
	r := &answer.Responder{Snapshot: func() *zone.Snapshot { return nil }}
	for _, profiling := range []bool{false, true} {
		rec := httptest.NewRecorder()
		DebugHandler(r, profiling, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/heap?debug=1", nil))
		want := http.StatusNotFound
		if profiling {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("profiling %v: GET /debug/pprof/heap: %d, want %d", profiling, rec.Code, want)
		}
	}
}

// TestMonitoringHandlerServesNoDebugEndpoints: the handler that monitoring
// reaches serves neither explain nor profiles, and the debug handler no
// metrics.
func TestMonitoringHandlerServesNoDebugEndpoints(t *testing.T) {
	r := &answer.Responder{Snapshot: func() *zone.Snapshot { return nil }}
	for _, tc := range []struct {
		name    string
		handler http.Handler
		path    string
		want    int
	}{
		{name: "monitoring", handler: HTTPHandler(prometheus.NewRegistry(), r, nil), path: "/debug/explain?name=a.b.svc.cluster.local", want: http.StatusNotFound},
		{name: "monitoring", handler: HTTPHandler(prometheus.NewRegistry(), r, nil), path: "/debug/pprof/heap", want: http.StatusNotFound},
		{name: "monitoring", handler: HTTPHandler(prometheus.NewRegistry(), r, nil), path: "/metrics", want: http.StatusOK},
		{name: "debug", handler: DebugHandler(r, true, nil), path: "/metrics", want: http.StatusNotFound},
		{name: "debug", handler: DebugHandler(r, true, nil), path: "/healthz", want: http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		tc.handler.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s handler: GET %s: %d, want %d", tc.name, tc.path, rec.Code, tc.want)
		}
	}
}
