package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/zone"
)

// TestHTTPProfilingIsOptIn: /debug/pprof/ exists only with profiling.
func TestHTTPProfilingIsOptIn(t *testing.T) {
	r := &answer.Responder{Snapshot: func() *zone.Snapshot { return nil }}
	for _, profiling := range []bool{false, true} {
		rec := httptest.NewRecorder()
		HTTPHandler(nil, r, profiling).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/heap?debug=1", nil))
		want := http.StatusNotFound
		if profiling {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("profiling %v: GET /debug/pprof/heap: %d, want %d", profiling, rec.Code, want)
		}
	}
}
