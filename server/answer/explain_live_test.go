package answer

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	k8s "github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/zone"
)

// TestExplainShowsLiveLoad: each candidate's polled value, its age and
// the blended score least-loaded compares.
func TestExplainShowsLiveLoad(t *testing.T) {
	opts := fixture.Options(t)
	opts.Policies.SetDefaultLoadQuery("inflight")
	snap := fixture.Build(t, opts,
		k8s.Service{Namespace: "lv", Name: "app", Headless: true,
			Annotations: map[string]string{zone.AnnotationPolicy: "least-loaded"}}.API(),
		k8s.EndpointSlice{Namespace: "lv", Name: "app-1", Service: "app", Endpoints: []k8s.Endpoint{
			{Address: "10.0.0.1", Pod: "p-0"},
			{Address: "10.0.0.2", Pod: "p-1"},
			{Address: "10.0.0.3", Pod: "p-2"},
		}}.API())
	at := time.Now().Add(-2 * time.Second)
	opts.Policies.UpdateLive("inflight", map[string]float64{"lv/p-0": 1, "lv/p-1": 3}, at, at.Add(time.Minute))
	old := at.Add(-time.Hour)
	opts.Policies.Live("inflight", "lv/p-2").Set(&policy.Sample{Value: 9, At: old, Until: old.Add(time.Minute)})

	r := &Responder{Snapshot: func() *zone.Snapshot { return snap }}
	e, err := r.Explain("app.lv.svc.cluster.local.", 1, netip.MustParseAddr("10.1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Candidates) != 3 {
		t.Fatalf("candidates %+v", e.Candidates)
	}
	// No handouts yet: scores are the live terms, p-2 (stale) the mean.
	want := []struct {
		live   float64
		fresh  bool
		minAge float64
		score  float64
	}{{1, true, 2, 0.5}, {3, true, 2, 1.5}, {9, false, 3600, 1}}
	for i, c := range e.Candidates {
		w := want[i]
		if c.Live == nil || *c.Live != w.live || c.LiveFresh != w.fresh || c.LiveAge == nil || *c.LiveAge < w.minAge || *c.LiveAge > w.minAge+5 ||
			math.Abs(c.Score-w.score) > 1e-9 {
			t.Errorf("candidate %s: live %v fresh %v age %v score %v; want %+v", c.Key, deref(c.Live), c.LiveFresh, deref(c.LiveAge), c.Score, w)
		}
	}
	// The fresh values are folded into share weights: p-0, under the
	// mean, gains share; p-1 loses it; p-2's stale value changes nothing.
	share := func(i int) float64 {
		if e.Candidates[i].Share == nil {
			t.Fatalf("candidate %d shows no share weight", i)
		}
		return *e.Candidates[i].Share
	}
	if !(share(0) > 1 && share(1) < 1 && share(2) == 1) {
		t.Errorf("share weights %v %v %v; want p-0 > 1 > p-1 and p-2 = 1", share(0), share(1), share(2))
	}
	for i, c := range e.Candidates {
		if c.Clients != 0 {
			t.Errorf("candidate %d before any answer: clients %v, want 0", i, c.Clients)
		}
	}

	// A client's answer (the wire path) holds its first address, and
	// explain shows the hold.
	wire, _ := fixture.Query("app.lv.svc.cluster.local.", dns.TypeA).Pack()
	out, _ := r.Respond(wire, netip.MustParseAddr("10.9.9.9"), false, &Scratch{})
	var reply dns.Msg
	if err := reply.Unpack(out); err != nil || len(reply.Answer) == 0 {
		t.Fatalf("no answer: %v %v", err, reply.String())
	}
	first := reply.Answer[0].(*dns.A).A.String()
	if e, err = r.Explain("app.lv.svc.cluster.local.", 1, netip.MustParseAddr("10.1.2.3")); err != nil {
		t.Fatal(err)
	}
	for _, c := range e.Candidates {
		want := 0
		if strings.Contains(strings.Join(c.Records, " "), " "+first) {
			want = 1
		}
		if c.Clients != want {
			t.Errorf("after one client's answer naming %s first: candidate %s holds %v clients, want %d", first, c.Key, c.Clients, want)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
