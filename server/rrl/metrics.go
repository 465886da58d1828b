package rrl

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what rate limiting does to replies. A nil *Metrics counts
// nothing.
type Metrics struct {
	limited, slips prometheus.Counter
}

// NewMetrics registers the rate limiting metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hdns_dns_rrl_limited_total",
			Help: "UDP replies over their client prefix's rate (--rrl-responses-per-second): dropped, or slipped.",
		}),
		slips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hdns_dns_rrl_slipped_total",
			Help: "Limited UDP replies sent as their question alone with TC set (every --rrl-slip-th), so that real clients retry over TCP.",
		}),
	}
	reg.MustRegister(m.limited, m.slips)
	return m
}

func (m *Metrics) limit() {
	if m != nil {
		m.limited.Inc()
	}
}

func (m *Metrics) slipped() {
	if m != nil {
		m.slips.Inc()
	}
}
