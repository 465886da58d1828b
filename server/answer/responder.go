// Package answer turns a query and the current zone snapshot into a reply
// by the RFCs: parsing, the choice of records (through the Services'
// policies), the packed reply with its truncation, the metrics of
// answers, and the explanation of one answer.
//
// It says whether a query goes upstream but does not forward it, and it
// knows nothing of sockets or HTTP: it must not import the server's
// socket, forwarding or admin packages, nor net/http.
package answer

import (
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server/wire"
	"github.com/hdns-dev/hdns/topology"
	"github.com/hdns-dev/hdns/zone"
)

// maxCNAMEChain bounds how many in-zone CNAMEs one answer follows.
const maxCNAMEChain = 8

// Result says what becomes of a query.
type Result uint8

const (
	// Drop: the packet gets no reply.
	Drop Result = iota
	// Reply: the returned bytes are the reply.
	Reply
	// Forward: the query is for a name outside the zones, from a client
	// allowed to forward; it is to be resolved upstream.
	Forward
)

// SnapshotFunc returns the current zone snapshot, or nil before the first
// one. It must not block.
type SnapshotFunc func() *zone.Snapshot

// Responder answers queries from the current snapshot. It is safe for
// concurrent use; each serving goroutine passes its own Scratch.
type Responder struct {
	// Snapshot supplies the zone.
	Snapshot SnapshotFunc
	// Zones are the apexes hdns is authoritative for (lower-case FQDNs).
	// Before the first snapshot, names inside them get SERVFAIL and all
	// others REFUSED.
	Zones []string
	// Metrics, when set, counts every reply.
	Metrics *Metrics
	// ForwardAllow lists the clients (by source address) whose queries
	// for names outside the zones Respond hands to forwarding; everyone
	// else gets REFUSED. Empty forwards nothing.
	ForwardAllow []netip.Prefix
	// PodRecords answers <dashed-ip>.<namespace>.pod.<zone> with that
	// address, as CoreDNS's "pods insecure" does: without checking that
	// such a Pod exists.
	PodRecords bool
	// Locator, when set, says where clients run, for the Services whose
	// policy reads the client's node and zone (prefer-zone, prefer-node);
	// nil leaves every client unknown.
	Locator ClientLocator
}

// ClientLocator says where a DNS client runs: topology.Locator. Locate
// must not block and should not allocate: it runs on the answer path.
type ClientLocator interface {
	Locate(netip.Addr) topology.Location
}

// Scratch is per-goroutine state reused across queries to avoid
// allocation. It must not be shared between goroutines.
type Scratch struct {
	q     query
	qname plainName
	// req holds what miekg/dns unpacks of the queries parseWire does not
	// read.
	req  dns.Msg
	plan plan
	w    writer
	// rrs holds the records the snapshot makes for this query's answer.
	rrs    zone.RRBuf
	preq   policy.Request
	policy policy.Scratch
	// explain, when set, asks for a trace of the choice instead of a
	// recorded handout.
	explain *Explanation
}

// Respond answers the query in pkt from client. With Reply, out is the
// reply: over UDP it fits the client's EDNS buffer (512 bytes without
// EDNS, at most 1232); over TCP, 65535 bytes; it aliases s and is valid
// until s is used again. Drop is for a packet that gets no reply (too
// short to carry an ID, or itself a response); Forward for a query to
// resolve upstream (ForwardAllow). out is nil for both.
func (r *Responder) Respond(pkt []byte, client netip.Addr, tcp bool, s *Scratch) (out []byte, _ Result) {
	var start time.Time
	if r.Metrics != nil {
		start = time.Now()
	}
	if len(pkt) < wire.HeaderLen || pkt[2]&0x80 != 0 {
		if r.Metrics != nil {
			r.Metrics.dropped.Inc()
		}
		return nil, Drop
	}
	s.rrs.Reset()
	q := &s.q
	if !parseWire(pkt, q, &s.qname) {
		parseMsg(pkt, q, &s.req)
	}
	if r.planReply(q, client, s) == Forward {
		return nil, Forward
	}
	p := &s.plan
	out, err := s.w.write(q, p, s, wire.Limit(tcp, q.hasOpt(), q.udpSize))
	if err != nil {
		out = s.serverFailure()
	}
	if r.Metrics != nil {
		r.Metrics.countLocality(p)
		r.Metrics.Count(p.qtype, p.rcode, time.Since(start).Seconds())
	}
	return out, Reply
}

// serverFailure writes SERVFAIL with the question and nothing else: the
// reply to a query whose answer holds a record the writer refuses, which
// only a bug in the zone makes.
func (s *Scratch) serverFailure() []byte {
	p := &s.plan
	qtype := p.qtype
	p.reset()
	p.rcode, p.qtype, p.question = dns.RcodeServerFailure, qtype, true
	out, err := s.w.write(&s.q, p, s, dns.MaxMsgSize)
	if err != nil {
		p.question = false
		out, _ = s.w.write(&s.q, p, s, dns.MaxMsgSize)
	}
	return out
}
