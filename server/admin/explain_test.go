package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/topology"
	"github.com/hdns-dev/hdns/zone"
)

func TestExplain(t *testing.T) {
	snap := fixture.Balance(t, "least-loaded, first=2")
	r := &answer.Responder{Snapshot: func() *zone.Snapshot { return snap }}
	h := DebugHandler(r, false, nil)
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

// fixedLocator is a ClientLocator with one known client.
type fixedLocator struct {
	client netip.Addr
	at     topology.Location
}

func (f fixedLocator) Locate(a netip.Addr) topology.Location {
	if a == f.client {
		return f.at
	}
	return topology.Location{}
}

func TestExplainLocatesClient(t *testing.T) {
	snap := fixture.Balance(t, "least-loaded, first=2")
	r := &answer.Responder{Snapshot: func() *zone.Snapshot { return snap }}
	loc := fixedLocator{client: netip.MustParseAddr("10.1.2.3"),
		at: topology.Location{Node: "node-1", Zone: "zone-1", Region: "region", By: topology.ByPodCIDR}}
	for _, tc := range []struct {
		name, query string
		loc         ClientLocator
		want        *answer.ExplainLocation
	}{
		{name: "found", query: "client=10.1.2.3", loc: loc,
			want: &answer.ExplainLocation{Node: "node-1", Zone: "zone-1", Region: "region", By: "pod-cidr"}},
		{name: "IPv4-mapped client", query: "client=::ffff:10.1.2.3", loc: loc,
			want: &answer.ExplainLocation{Node: "node-1", Zone: "zone-1", Region: "region", By: "pod-cidr"}},
		{name: "unknown", query: "client=10.7.7.7", loc: loc, want: &answer.ExplainLocation{By: "unknown"}},
		{name: "no locator", query: "client=10.1.2.3", loc: nil, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			DebugHandler(r, false, tc.loc).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/explain?name=app.bal.svc.cluster.local&"+tc.query, nil))
			var e answer.Explanation
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatal(rec.Code, err)
			}
			if (e.ClientLocation == nil) != (tc.want == nil) || (tc.want != nil && *e.ClientLocation != *tc.want) {
				t.Errorf("clientLocation %+v, want %+v", e.ClientLocation, tc.want)
			}
		})
	}
}
