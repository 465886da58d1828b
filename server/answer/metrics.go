package answer

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Request counters are resolved once at start for every (qtype, rcode) pair
// the server can count, so that counting a query is one atomic add and
// takes no lock.
var (
	countedTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeTXT, dns.TypeCNAME,
		dns.TypeSOA, dns.TypeNS, dns.TypeANY, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeMX}
	countedRcodes = []int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
		dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeNotAuth, dns.RcodeBadVers}
)

const otherLabel = "other"

// Metrics are the DNS server's Prometheus metrics.
type Metrics struct {
	duration prometheus.Histogram
	requests [][]prometheus.Counter // [type index][rcode index], "other" last in each
	typeIdx  [256]uint8             // qtype (< 256) → index; len(countedTypes) = other
	rcodeIdx [32]uint8
	dropped  prometheus.Counter
	locality [numLocalities]prometheus.Counter
}

// locality is where an answer's first address runs, seen from its client.
type locality uint8

const (
	// unknownClient: the client matched no node.
	unknownClient locality = iota
	// sameNode: the first address runs on the client's node.
	sameNode
	// sameZone: on another node of the client's zone.
	sameZone
	// otherZone: neither on the client's node nor known to be in its
	// zone (another zone, or a zone unknown on either side).
	otherZone
	numLocalities
)

var localityLabels = [numLocalities]string{"unknown", "same-node", "same-zone", "other-zone"}

// NewMetrics creates the server metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hdns_dns_request_duration_seconds",
			Help:    "Time from a query's arrival to its reply being written.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 2, 20),
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hdns_dns_dropped_total",
			Help: "Packets dropped without a reply (too short, or responses sent to the server).",
		}),
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hdns_dns_requests_total",
		Help: "DNS requests answered, by query type and response code.",
	}, []string{"type", "rcode"})
	for i := range m.typeIdx {
		m.typeIdx[i] = uint8(len(countedTypes))
	}
	for i, t := range countedTypes {
		m.typeIdx[t] = uint8(i)
	}
	for i := range m.rcodeIdx {
		m.rcodeIdx[i] = uint8(len(countedRcodes))
	}
	for i, r := range countedRcodes {
		m.rcodeIdx[r] = uint8(i)
	}
	typeNames := append(typeLabels(), otherLabel)
	for _, tn := range typeNames {
		row := make([]prometheus.Counter, 0, len(countedRcodes)+1)
		for _, r := range countedRcodes {
			row = append(row, requests.WithLabelValues(tn, rcodeLabel(r)))
		}
		row = append(row, requests.WithLabelValues(tn, otherLabel))
		m.requests = append(m.requests, row)
	}
	answers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hdns_dns_answer_locality_total",
		Help: "Answers of Services whose policy reads the client's place (prefer-zone, prefer-node, trafficDistribution), " +
			"by where their first address runs: same-node, same-zone, other-zone as the client, or unknown (the client matched no node).",
	}, []string{"locality"})
	for l, name := range localityLabels {
		m.locality[l] = answers.WithLabelValues(name)
	}
	reg.MustRegister(m.duration, requests, m.dropped, answers)
	return m
}

// rcodeLabel names rcode. miekg/dns's table names 16 BADSIG, its TSIG
// meaning; hdns sends 16 only as the OPT's BADVERS (RFC 6891).
func rcodeLabel(rcode int) string {
	if rcode == dns.RcodeBadVers {
		return "BADVERS"
	}
	return dns.RcodeToString[rcode]
}

func typeLabels() []string {
	names := make([]string, len(countedTypes))
	for i, t := range countedTypes {
		names[i] = dns.TypeToString[t]
	}
	return names
}

// Count records one reply, of rcode to a question of qtype, sent seconds
// after its query came. A nil *Metrics counts nothing.
func (m *Metrics) Count(qtype uint16, rcode int, seconds float64) {
	if m == nil {
		return
	}
	ti := uint8(len(countedTypes))
	if qtype < uint16(len(m.typeIdx)) {
		ti = m.typeIdx[qtype]
	}
	ri := uint8(len(countedRcodes))
	if rcode >= 0 && rcode < len(m.rcodeIdx) {
		ri = m.rcodeIdx[rcode]
	}
	m.requests[ti][ri].Inc()
	m.duration.Observe(seconds)
}

// countLocality counts the locality of the answer p plans, when its
// choice located the client and picked an endpoint.
func (m *Metrics) countLocality(p *plan) {
	if p.located && p.choice != nil && len(p.picked) > 0 {
		m.locality[p.locality()].Inc()
	}
}
