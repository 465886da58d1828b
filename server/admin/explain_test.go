package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/zone"
)

func TestExplain(t *testing.T) {
	snap := fixture.Balance(t, "least-loaded, first=2")
	r := &answer.Responder{Snapshot: func() *zone.Snapshot { return snap }}
	h := DebugHandler(r, false)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/explain?name=app.bal.svc.cluster.local&type=a&client=10.1.2.3", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var e answer.Explanation
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if e.Service != "bal/app" || e.Policy != "least-loaded, first=2" || len(e.Candidates) != 10 || len(e.Steps) != 2 || len(e.Answer) != 2 || e.Rcode != "NOERROR" {
		t.Errorf("explanation %+v", e)
	}
	if len(e.Steps) == 2 && (len(e.Steps[0].Output) != 10 || len(e.Steps[1].Output) != 2) {
		t.Errorf("steps %+v", e.Steps)
	}
	for i, c := range e.Candidates {
		if c.Load != 0 {
			t.Errorf("explain recorded a handout: %s has load %v", c.Key, c.Load)
		}
		want := answer.ExplainCandidate{Index: i, Key: fmt.Sprintf("bal/app-%d", i), Hostname: fmt.Sprintf("10-9-0-%d", i+1),
			Pod: fmt.Sprintf("app-%d", i), Node: fmt.Sprintf("node-%d", i%3), Zone: fmt.Sprintf("zone-%d", i%2)}
		if c.Index != want.Index || c.Key != want.Key || c.Hostname != want.Hostname || c.Pod != want.Pod || c.Node != want.Node || c.Zone != want.Zone {
			t.Errorf("candidate %d is %+v, want %+v", i, c, want)
		}
	}
	for _, bad := range []string{"/debug/explain", "/debug/explain?name=x&type=NOPE", "/debug/explain?name=x&client=nope"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", bad, nil))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, rec.Code)
		}
	}
}
