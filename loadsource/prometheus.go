// Package loadsource polls Prometheus for the live load of each Pod and
// publishes it into the live load cells that the policy Compiler hands to
// endpoints (policy.Live), where least-loaded reads it without locks.
//
// It owns the polling goroutine, the PromQL client, the parsing of query
// results into per-Pod values, and the load source's logs and metrics. It
// is a package of its own so that policy, which runs on the query path,
// carries no HTTP or PromQL client and no polling goroutine, and so that
// another load source can write the same cells through the same Sink. It
// must not import any hdns package (zone, policy, server): it reaches the
// cells only through Sink, and policy must never import it.
package loadsource

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// Sink receives polled values; *policy.Compiler is one.
type Sink interface {
	// LiveQueries lists the load queries some endpoint wants values of.
	LiveQueries() []string
	// UpdateLive publishes one successful poll of query: values maps
	// "namespace/pod" to a finite value ≥ 0, read at at and fresh until
	// until. Endpoints of query missing from values have no value.
	UpdateLive(query string, values map[string]float64, at, until time.Time)
}

// Config says where and how to poll.
type Config struct {
	// URL is the Prometheus server's base URL (http://prometheus:9090).
	URL string
	// Query is the default load query, always polled (so that
	// hdns_load_source_up says whether Prometheus answers even before any
	// Service reads load). It must return an instant vector with one
	// sample per Pod, labelled by NamespaceLabel and PodLabel.
	Query string
	// NamespaceLabel and PodLabel name the labels that identify a
	// sample's Pod; "" means "namespace" and "pod".
	NamespaceLabel, PodLabel string
	// Interval is the time between the starts of two polls; > 0.
	Interval time.Duration
	// MaxAge is how long a polled value stays fresh; 0 means 3 Intervals.
	MaxAge time.Duration
	// Timeout bounds each query; 0 means Interval/2.
	Timeout time.Duration
	// BearerTokenFile, when set, names a file whose content (trimmed) is
	// sent as "Authorization: Bearer <content>". It is read for every
	// request, so a rotated token (a projected ServiceAccount token) is
	// used from the next poll on.
	BearerTokenFile string
	// CAFile names a PEM bundle that verifies the server's certificate in
	// place of the system's roots. CertFile and KeyFile, set together,
	// name the client certificate and key presented to the server. Each
	// request checks the files and picks up new contents.
	CAFile, CertFile, KeyFile string
	// Client, when set, makes the HTTP requests (tests) and the four
	// fields above are ignored; else a client of prometheus/common's
	// transport configured by them.
	Client *http.Client
}

// Prometheus polls load queries from a Prometheus server on one goroutine
// (Run) and publishes their values to a Sink.
type Prometheus struct {
	cfg     Config
	api     v1.API
	sink    Sink
	log     *slog.Logger
	metrics *Metrics

	// Poll state, owned by the polling goroutine.
	state      sourceState
	failures   int       // failed polls since the last error log
	lastErrLog time.Time // when a failure was last logged
	lastBadLog map[string]time.Time
}

type sourceState uint8

const (
	stateUnknown sourceState = iota
	stateUp
	stateDown
)

// errorLogEvery bounds the logging of a source that stays down, and of a
// query that keeps returning invalid samples, to one line per this period.
const errorLogEvery = time.Minute

// New checks cfg and returns a source that writes to sink. metrics may be
// nil.
func New(cfg Config, sink Sink, log *slog.Logger, metrics *Metrics) (*Prometheus, error) {
	if cfg.URL == "" {
		return nil, errors.New("no Prometheus URL")
	}
	if cfg.Query == "" {
		return nil, errors.New("no load query")
	}
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("load interval %v: want > 0", cfg.Interval)
	}
	if cfg.MaxAge < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("staleness bound %v and timeout %v: want ≥ 0", cfg.MaxAge, cfg.Timeout)
	}
	cfg.NamespaceLabel = cmp.Or(cfg.NamespaceLabel, "namespace")
	cfg.PodLabel = cmp.Or(cfg.PodLabel, "pod")
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 3 * cfg.Interval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = cfg.Interval / 2
	}
	ac := api.Config{Address: cfg.URL, Client: cfg.Client}
	if ac.Client == nil {
		var err error
		if ac.Client, err = newHTTPClient(cfg); err != nil {
			return nil, err
		}
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %w", cfg.URL, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Prometheus{cfg: cfg, api: v1.NewAPI(client), sink: sink, log: log, metrics: metrics,
		lastBadLog: map[string]time.Time{}}, nil
}

// newHTTPClient returns the client of cfg's authentication and TLS files,
// built by prometheus/common, which Prometheus itself scrapes with: it
// re-reads the token per request and the TLS files when they change. The
// transport's own timeouts are 30 s; every request also carries the
// query's deadline.
func newHTTPClient(cfg Config) (*http.Client, error) {
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	hc := config.DefaultHTTPClientConfig
	hc.ProxyConfig = config.ProxyConfig{ProxyFromEnvironment: true}
	hc.TLSConfig = config.TLSConfig{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	if cfg.BearerTokenFile != "" {
		hc.Authorization = &config.Authorization{Type: "Bearer", CredentialsFile: cfg.BearerTokenFile}
	}
	if err := hc.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus client configuration: %w", err)
	}
	client, err := config.NewClientFromConfig(hc, "hdns-loadsource", config.WithUserAgent("hdns"))
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	return client, nil
}

// Run polls at once and then every Interval until ctx is done. A poll
// that overruns the interval delays the next one; polls never overlap.
func (p *Prometheus) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll runs every distinct load query once, publishes the results of
// those that succeed, and returns the failures joined. It must not be
// called concurrently with itself or Run.
func (p *Prometheus) Poll(ctx context.Context) error {
	return p.poll(ctx, time.Now)
}

// poll is Poll reading the time from now: the instant each query asks
// for, and when failures and invalid samples were last logged.
func (p *Prometheus) poll(ctx context.Context, now func() time.Time) error {
	queries := append(p.sink.LiveQueries(), p.cfg.Query)
	slices.Sort(queries)
	queries = slices.Compact(queries)
	var errs []error
	for _, q := range queries {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := p.pollOne(ctx, q, now); err != nil {
			errs = append(errs, fmt.Errorf("load query %q: %w", q, err))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: not the source's fault
	}
	err := errors.Join(errs...)
	p.report(err, now())
	return err
}

func (p *Prometheus) pollOne(ctx context.Context, query string, now func() time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	var opts []v1.Option
	if t := p.cfg.Timeout; t < time.Second || t%time.Second == 0 {
		// Prometheus parses "500ms" and "2s" but not Go's "1.5s".
		opts = append(opts, v1.WithTimeout(t.Truncate(time.Millisecond)))
	}
	at := now()
	v, warnings, _, err := p.api.Query(ctx, query, at, opts...)
	if err != nil {
		p.metrics.queryFailed()
		return err
	}
	if len(warnings) > 0 {
		p.log.Debug("load query warnings", "query", query, "warnings", warnings)
	}
	values, bad, err := Parse(v, p.cfg.NamespaceLabel, p.cfg.PodLabel)
	if err != nil {
		p.metrics.queryFailed()
		return err
	}
	if len(bad) > 0 {
		p.metrics.invalid(len(bad))
		if last, ok := p.lastBadLog[query]; !ok || now().Sub(last) >= errorLogEvery {
			p.lastBadLog[query] = now()
			p.log.Warn("load query returned samples that match no Pod or carry no usable value; those Pods use the handout ledger alone",
				"query", query, "invalid", len(bad), "first", bad[0], "next_report_in", errorLogEvery)
		}
	}
	p.sink.UpdateLive(query, values, at, at.Add(p.cfg.MaxAge))
	return nil
}

// report logs and counts the outcome of a poll that ended at now: a
// change of state once, and a source that stays down at most once per
// errorLogEvery.
func (p *Prometheus) report(err error, now time.Time) {
	if err == nil {
		p.metrics.setUp(true)
		if p.state != stateUp {
			p.log.Info("load source up", "url", p.cfg.URL, "failed_polls", p.failures)
		}
		p.state, p.failures = stateUp, 0
		return
	}
	p.metrics.setUp(false)
	p.failures++
	if p.state != stateDown || now.Sub(p.lastErrLog) >= errorLogEvery {
		p.log.Warn("load source down: least-loaded uses the handout ledger once polled values are older than the staleness bound",
			"url", p.cfg.URL, "err", err, "failed_polls", p.failures, "max_age", p.cfg.MaxAge)
		p.lastErrLog, p.failures = now, 0
	}
	p.state = stateDown
}

// Parse reads a query result: an instant vector with one sample per Pod,
// identified by its namespace and pod labels. It returns the valid values
// by "namespace/pod" and a description of each invalid sample: a missing
// label, a value that is NaN, infinite or negative, or a Pod that appears
// twice (all its samples are dropped: which one is meant is unknown). A
// result that is not a vector is an error.
func Parse(v model.Value, namespaceLabel, podLabel string) (values map[string]float64, invalid []string, err error) {
	vec, ok := v.(model.Vector)
	if !ok {
		t := "nothing"
		if v != nil {
			t = v.Type().String()
		}
		return nil, nil, fmt.Errorf("query returned %s, want an instant vector", t)
	}
	values = make(map[string]float64, len(vec))
	dup := map[string]bool{}
	for _, s := range vec {
		ns, pod := s.Metric[model.LabelName(namespaceLabel)], s.Metric[model.LabelName(podLabel)]
		f := float64(s.Value)
		switch {
		case ns == "" || pod == "":
			invalid = append(invalid, fmt.Sprintf("%s: no %q or %q label", s.Metric, namespaceLabel, podLabel))
			continue
		case math.IsNaN(f) || math.IsInf(f, 0) || f < 0:
			invalid = append(invalid, fmt.Sprintf("%s: value %v, want a finite value ≥ 0", s.Metric, f))
			continue
		}
		key := string(ns) + "/" + string(pod)
		if _, seen := values[key]; seen || dup[key] {
			if !dup[key] {
				invalid = append(invalid, fmt.Sprintf("%s: more than one sample for Pod %s", s.Metric, key))
			}
			dup[key] = true
			delete(values, key)
			continue
		}
		values[key] = f
	}
	return values, invalid, nil
}

// Metrics are the load source's Prometheus metrics.
type Metrics struct {
	up       prometheus.Gauge
	failures prometheus.Counter
	invalids prometheus.Counter
}

// NewMetrics creates the load source metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hdns_load_source_up",
			Help: "1 when every load query of the last poll succeeded, else 0 (least-loaded then falls back to the handout ledger as values go stale).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hdns_load_source_query_errors_total",
			Help: "Load queries that failed: unreachable, slow, an error answer or a result that is not a vector.",
		}),
		invalids: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hdns_load_source_invalid_samples_total",
			Help: "Samples of load query results dropped: no namespace or pod label, NaN, infinite or negative, or a Pod reported twice.",
		}),
	}
	reg.MustRegister(m.up, m.failures, m.invalids)
	return m
}

func (m *Metrics) setUp(up bool) {
	if m == nil {
		return
	}
	if up {
		m.up.Set(1)
	} else {
		m.up.Set(0)
	}
}

func (m *Metrics) queryFailed() {
	if m != nil {
		m.failures.Inc()
	}
}

func (m *Metrics) invalid(n int) {
	if m != nil {
		m.invalids.Add(float64(n))
	}
}
