package zone

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the zone's Prometheus metrics.
type Metrics struct {
	// BuildDuration is the time of every publish, by kind: "full" (every
	// Service: the first sync, a relist) or "incremental" (the Services a
	// batch of changes touched).
	BuildDuration      *prometheus.HistogramVec
	Names              prometheus.Gauge
	Services           prometheus.Gauge
	Endpoints          prometheus.Gauge
	Serial             prometheus.Gauge
	ProgrammingLatency prometheus.Histogram
	SourceErrors       *prometheus.CounterVec
	PolicyErrors       prometheus.Gauge
	SourceUp           prometheus.Gauge
	// Changes counts, per rebuild, the objects its batch changed: an
	// object changed several times between two rebuilds counts once.
	Changes *prometheus.CounterVec
	// RebuiltServices counts the Services incremental publishes rebuilt.
	RebuiltServices prometheus.Counter
}

// NewMetrics creates the zone metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BuildDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hdns_zone_build_duration_seconds",
			Help:    "Time to build and publish a zone snapshot, by kind: full (every Service: the first sync, a relist) or incremental (the Services a batch of changes touched).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"kind"}),
		Names:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "hdns_zone_names", Help: "Owner names in the current snapshot."}),
		Services:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "hdns_zone_services", Help: "Services in the current snapshot."}),
		Endpoints: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hdns_zone_endpoints", Help: "Ready headless endpoints in the current snapshot."}),
		Serial:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "hdns_zone_serial", Help: "SOA serial of the current snapshot."}),
		ProgrammingLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hdns_zone_programming_latency_seconds",
			Help:    "From an EndpointSlice's last-change-trigger-time to the publication of the snapshot that contains it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		SourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hdns_zone_source_errors_total",
			Help: "Errors reading the zone's source (manifests that fail to parse, watch errors).",
		}, []string{"source"}),
	}
	m.PolicyErrors = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hdns_policy_annotation_errors",
		Help: "Services with a rejected policy annotation (hdns.dev/policy: served with the default policy; hdns.dev/weights: every weight 1).",
	})
	m.SourceUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hdns_zone_source_up",
		Help: "1 while the zone's source answers (the API server's last probe succeeded, or the manifests' last load did), else 0: the zone is then the last good one.",
	})
	m.Changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hdns_zone_changes_total",
		Help: "Objects the sources changed, counted once per rebuild that took them up, by kind (service, endpointslice) and op (upsert, delete).",
	}, []string{"kind", "op"})
	m.RebuiltServices = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hdns_zone_rebuilt_services_total",
		Help: "Services rebuilt by incremental publishes: those a batch of changes touched.",
	})
	// Both kinds exist from the start, so that rates over them do too.
	m.BuildDuration.WithLabelValues(BuildFull)
	m.BuildDuration.WithLabelValues(BuildIncremental)
	reg.MustRegister(m.RebuiltServices, m.Changes, m.SourceUp, m.PolicyErrors, m.BuildDuration, m.Names, m.Services, m.Endpoints, m.Serial, m.ProgrammingLatency, m.SourceErrors)
	return m
}

// Build kinds, the values of hdns_zone_build_duration_seconds's kind label.
const (
	BuildFull        = "full"
	BuildIncremental = "incremental"
)

func (m *Metrics) observeBuild(s *Snapshot, took time.Duration, incremental bool, rebuilt int) {
	kind := BuildFull
	if incremental {
		kind = BuildIncremental
		m.RebuiltServices.Add(float64(rebuilt))
	}
	m.BuildDuration.WithLabelValues(kind).Observe(took.Seconds())
	m.Names.Set(float64(s.Stats.Names))
	m.Services.Set(float64(s.Stats.Services))
	m.Endpoints.Set(float64(s.Stats.Endpoints))
	m.Serial.Set(float64(s.Serial))
}
