package server

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the transport does with TCP connections. A nil
// *Metrics counts nothing.
type Metrics struct {
	connections *prometheus.CounterVec
	closes      *prometheus.CounterVec
}

// NewMetrics registers the transport's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hdns_dns_tcp_connections_total",
			Help: "TCP connections by what the server did with them: accepted, or refused at total_limit (MaxTCPConns), client_limit (per source address) or shutting_down.",
		}, []string{"result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hdns_dns_tcp_closed_total",
			Help: "Accepted TCP connections closed, by reason: idle (no message within the idle timeout, 1s under pressure, or none in progress when the server stops), unfinished_message (a message begun and not finished in time), client, malformed or error.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.connections, m.closes)
	return m
}

func (m *Metrics) accepted() {
	if m != nil {
		m.connections.WithLabelValues("accepted").Inc()
	}
}

func (m *Metrics) refused(limit string) {
	if m != nil {
		m.connections.WithLabelValues(limit).Inc()
	}
}

func (m *Metrics) closed(reason string) {
	if m != nil {
		m.closes.WithLabelValues(reason).Inc()
	}
}
