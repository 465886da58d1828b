package loadsource

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
)

// fakeProm speaks the part of the Prometheus HTTP API the source uses:
// /api/v1/query answers with the body its reply function gives for the
// query, and counts the queries.
type fakeProm struct {
	mu     sync.Mutex
	counts map[string]int
	reply  func(query string) (status int, body string)
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	q := r.FormValue("query")
	f.mu.Lock()
	f.counts[q]++
	reply := f.reply
	f.mu.Unlock()
	status, body := reply(q)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

func (f *fakeProm) setReply(reply func(string) (int, string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply = reply
}

func (f *fakeProm) count(q string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[q]
}

// vector is a success answer with samples given as label sets and values.
func vector(samples ...string) string {
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(samples, ",") + `]}}`
}

func sample(labels, value string) string {
	return `{"metric":{` + labels + `},"value":[1700000000,"` + value + `"]}`
}

type fakeSink struct {
	mu      sync.Mutex
	queries []string
	got     map[string]map[string]float64
	until   time.Duration
}

func (s *fakeSink) LiveQueries() []string { return s.queries }
func (s *fakeSink) UpdateLive(q string, v map[string]float64, at, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[q] = maps.Clone(v)
	s.until = until.Sub(at)
}

func newTestSource(t *testing.T, f *fakeProm, sink *fakeSink, log *bytes.Buffer) *Prometheus {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	reg := prometheus.NewRegistry()
	var logger *slog.Logger
	if log != nil {
		logger = slog.New(slog.NewTextHandler(log, nil))
	}
	p, err := New(Config{URL: srv.URL, Query: "q", Interval: 200 * time.Millisecond}, sink, logger, NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	vec := model.Vector{
		{Metric: model.Metric{"namespace": "ns", "pod": "a"}, Value: 3},
		{Metric: model.Metric{"namespace": "ns", "pod": "b"}, Value: 0},
		{Metric: model.Metric{"namespace": "ns"}, Value: 1},
		{Metric: model.Metric{"pod": "c"}, Value: 1},
		{Metric: model.Metric{"namespace": "ns", "pod": "nan"}, Value: model.SampleValue(math.NaN())},
		{Metric: model.Metric{"namespace": "ns", "pod": "inf"}, Value: model.SampleValue(math.Inf(1))},
		{Metric: model.Metric{"namespace": "ns", "pod": "neg"}, Value: -1},
		{Metric: model.Metric{"namespace": "ns", "pod": "dup", "x": "1"}, Value: 1},
		{Metric: model.Metric{"namespace": "ns", "pod": "dup", "x": "2"}, Value: 2},
		{Metric: model.Metric{"namespace": "ns", "pod": "dup", "x": "3"}, Value: 3},
	}
	values, bad, err := Parse(vec, "namespace", "pod")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]float64{"ns/a": 3, "ns/b": 0}; !maps.Equal(values, want) {
		t.Errorf("values %v, want %v", values, want)
	}
	if len(bad) != 6 {
		t.Errorf("invalid %d: %q; want 6 (2 without a label, NaN, Inf, negative, one for the duplicated Pod)", len(bad), bad)
	}
	// Label names are configurable.
	values, _, _ = Parse(model.Vector{{Metric: model.Metric{"exported_namespace": "n", "kubernetes_pod_name": "p"}, Value: 1}},
		"exported_namespace", "kubernetes_pod_name")
	if !maps.Equal(values, map[string]float64{"n/p": 1}) {
		t.Errorf("configured labels: %v", values)
	}
	for _, v := range []model.Value{model.Matrix{}, &model.Scalar{Value: 1}, nil} {
		if _, _, err := Parse(v, "namespace", "pod"); err == nil || !strings.Contains(err.Error(), "want an instant vector") {
			t.Errorf("Parse(%T): err %v, want an instant vector error", v, err)
		}
	}
}

func TestPollPublishesOncePerQuery(t *testing.T) {
	f := &fakeProm{counts: map[string]int{}, reply: func(q string) (int, string) {
		return 200, vector(sample(`"namespace":"ns","pod":"a"`, "2"), sample(`"namespace":"ns","pod":"b"`, "NaN"),
			sample(`"namespace":"ns","pod":"`+q+`"`, "5"))
	}}
	sink := &fakeSink{queries: []string{"q", "q2", "q2"}, got: map[string]map[string]float64{}}
	p := newTestSource(t, f, sink, nil)
	if err := p.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.count("q") != 1 || f.count("q2") != 1 {
		t.Errorf("one poll ran q %d and q2 %d times; want each once", f.count("q"), f.count("q2"))
	}
	if want := map[string]float64{"ns/a": 2, "ns/q2": 5}; !maps.Equal(sink.got["q2"], want) {
		t.Errorf("q2 published %v, want %v (NaN dropped)", sink.got["q2"], want)
	}
	if sink.until != 600*time.Millisecond {
		t.Errorf("values fresh for %v, want 3 intervals", sink.until)
	}
	if got := testutil.ToFloat64(p.metrics.up); got != 1 {
		t.Errorf("hdns_load_source_up %v after a good poll", got)
	}
	if n := testutil.ToFloat64(p.metrics.invalids); n != 2 {
		t.Errorf("invalid samples counted %v, want 2 (a NaN per query)", n)
	}
}

func TestPollFailures(t *testing.T) {
	good := func(string) (int, string) { return 200, vector(sample(`"namespace":"ns","pod":"a"`, "1")) }
	tests := map[string]func(string) (int, string){
		"server error": func(string) (int, string) { return 500, "oops" },
		"API error": func(string) (int, string) {
			return 400, `{"status":"error","errorType":"bad_data","error":"parse error"}`
		},
		"matrix": func(string) (int, string) {
			return 200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`
		},
		"slow": func(string) (int, string) { time.Sleep(400 * time.Millisecond); return good("") },
	}
	for name, reply := range tests {
		t.Run(name, func(t *testing.T) {
			f := &fakeProm{counts: map[string]int{}, reply: good}
			sink := &fakeSink{got: map[string]map[string]float64{}}
			p := newTestSource(t, f, sink, nil)
			if err := p.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			delete(sink.got, "q")
			f.setReply(reply)
			start := time.Now()
			err := p.Poll(context.Background())
			if err == nil {
				t.Fatal("Poll succeeded")
			}
			if took := time.Since(start); took > 300*time.Millisecond {
				t.Errorf("a failing poll took %v; the timeout is 100ms", took)
			}
			if _, ok := sink.got["q"]; ok {
				t.Error("a failed poll published values; it must leave the last ones to go stale")
			}
			if got := testutil.ToFloat64(p.metrics.up); got != 0 {
				t.Errorf("hdns_load_source_up %v after a failed poll", got)
			}
			if n := testutil.ToFloat64(p.metrics.failures); n != 1 {
				t.Errorf("query errors %v, want 1", n)
			}
		})
	}
	// An unreachable server fails too.
	sink := &fakeSink{got: map[string]map[string]float64{}}
	p, err := New(Config{URL: "http://127.0.0.1:1", Query: "q", Interval: time.Second}, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Poll(context.Background()); err == nil || !strings.Contains(err.Error(), `load query "q"`) {
		t.Errorf("unreachable Prometheus: err %v", err)
	}
}

func TestLogsStateChangesNotEveryFailure(t *testing.T) {
	var logs bytes.Buffer
	failing := func(string) (int, string) { return 500, "down" }
	f := &fakeProm{counts: map[string]int{}, reply: failing}
	sink := &fakeSink{got: map[string]map[string]float64{}}
	p := newTestSource(t, f, sink, &logs)
	now := time.Now()
	clock := func() time.Time { return now }
	for range 10 {
		p.poll(context.Background(), clock)
		now = now.Add(time.Second)
	}
	if n := strings.Count(logs.String(), "load source down"); n != 1 {
		t.Errorf("10 failed polls in 10s logged %d times, want once:\n%s", n, logs.String())
	}
	now = now.Add(errorLogEvery)
	p.poll(context.Background(), clock)
	if n := strings.Count(logs.String(), "load source down"); n != 2 {
		t.Errorf("a source down for over %v logged %d times, want a reminder", errorLogEvery, n)
	}
	f.setReply(func(string) (int, string) {
		return 200, vector(sample(`"pod":"a"`, "1"), sample(`"namespace":"ns","pod":"b"`, "-3"))
	})
	for range 5 {
		p.poll(context.Background(), clock)
	}
	out := logs.String()
	if strings.Count(out, "load source up") != 1 || strings.Count(out, "carry no usable value") != 1 {
		t.Errorf("recovery with bad samples over 5 polls: want one up line and one invalid-samples line:\n%s", out)
	}
	if want := []string{"q"}; !slices.Equal(slices.Collect(maps.Keys(sink.got)), want) || len(sink.got["q"]) != 0 {
		t.Errorf("published %v, want q with no values", sink.got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Query: "q", Interval: time.Second},
		{URL: "http://x", Interval: time.Second},
		{URL: "http://x", Query: "q"},
		{URL: "http://x", Query: "q", Interval: time.Second, MaxAge: -1},
		{URL: "::bad", Query: "q", Interval: time.Second},
	} {
		if _, err := New(c, &fakeSink{}, nil, nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
