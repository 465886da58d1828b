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
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server/wire"
	"github.com/hdns-dev/hdns/zone"
)

const (
	// maxCNAMEChain bounds how many in-zone CNAMEs one answer follows.
	maxCNAMEChain = 8
	headerLen     = wire.HeaderLen
	maxUDPSize    = wire.MaxUDPSize
)

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
}

// Scratch is per-goroutine state reused across queries to avoid
// allocation. It must not be shared between goroutines.
type Scratch struct {
	req, resp dns.Msg
	opt       dns.OPT
	hasOpt    bool // the query had EDNS: the reply carries opt
	ecs       dns.EDNS0_SUBNET
	// usedClient is set when the answer depended on who asked.
	usedClient bool
	// explain, when set, asks for a trace of the choice instead of a
	// recorded handout.
	explain *Explanation
	// outOfZone is set by answer for an IN question outside every zone.
	outOfZone bool
	picked    []int
	preq      policy.Request
	policy    policy.Scratch
	answer    []dns.RR
	extra     []dns.RR
	// rrs holds the records the snapshot makes for this query's answer.
	rrs  zone.RRBuf
	buf  []byte
	fast fastState
	// slowOnly turns the fast path off (for tests comparing the two);
	// fastHit is set when the fast path answered.
	slowOnly, fastHit bool
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
	if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
		if r.Metrics != nil {
			r.Metrics.dropped.Inc()
		}
		return nil, Drop
	}
	// The common queries take the fast path (fast.go), which writes the
	// same bytes as the rest of this function without dns.Msg.
	s.outOfZone, s.fastHit = false, false
	s.rrs.Reset()
	if s.explain == nil && !s.slowOnly {
		if out, ok := r.respondFast(pkt, client, tcp, s, start); ok {
			s.fastHit = true
			return out, Reply
		}
	}
	req, m := &s.req, &s.resp
	resetMsg(m)
	s.rrs.Reset()
	s.outOfZone = false
	source := client
	qtype := uint16(0)
	limit := 512
	if tcp {
		limit = dns.MaxMsgSize
	}

	if err := req.Unpack(pkt); err != nil {
		// The header is all we trust: reply with a fresh one.
		m.Id = binary.BigEndian.Uint16(pkt)
		m.Response = true
		m.Opcode = int(pkt[2]>>3) & 0xF
		m.Rcode = dns.RcodeFormatError
		return r.finish(m, s, limit, qtype, start), Reply
	}
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode

	// EDNS (RFC 6891) first, so that every reply to an EDNS query carries
	// an OPT: one OPT at most; echo version 0 with our buffer size and the
	// DO bit; unknown options are ignored.
	var reqOpt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if reqOpt != nil {
				m.Rcode = dns.RcodeFormatError
				return r.finish(m, s, limit, qtype, start), Reply
			}
			reqOpt = o
		}
	}
	var ecs *dns.EDNS0_SUBNET
	s.hasOpt = reqOpt != nil
	if reqOpt != nil {
		s.opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}, Option: s.opt.Option[:0]}
		s.opt.SetUDPSize(maxUDPSize)
		s.opt.SetDo(reqOpt.Do())
		if !tcp {
			limit = min(max(int(reqOpt.UDPSize()), 512), maxUDPSize)
		}
		if reqOpt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return r.finishEDNS(m, s, limit, qtype, start), Reply
		}
		for _, o := range reqOpt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				ecs = e
			}
		}
	}
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return r.finishEDNS(m, s, limit, qtype, start), Reply
	}
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	m.Question = req.Question
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return r.finishEDNS(m, s, limit, qtype, start), Reply
	}
	q := req.Question[0]
	qtype = q.Qtype
	if ecs != nil {
		addr, ok := clientSubnet(ecs)
		if !ok {
			// RFC 7871 7.1.1: a malformed option is a format error.
			m.Rcode = dns.RcodeFormatError
			return r.finishEDNS(m, s, limit, qtype, start), Reply
		}
		// A /0 subnet names nobody: the asker stays the client.
		if ecs.SourceNetmask > 0 {
			client = addr
		}
	}

	s.usedClient = false
	r.answer(m, s, &q, client)
	if s.outOfZone && r.forwards(source) {
		return nil, Forward
	}
	if ecs != nil {
		// RFC 7871 7.2.1: echo family, address and source prefix; the
		// scope covers the source prefix when the answer depended on the
		// client, else 0 (valid for everyone).
		s.ecs = *ecs
		s.ecs.SourceScope = 0
		if s.usedClient {
			s.ecs.SourceScope = ecs.SourceNetmask
		}
		s.opt.Option = append(s.opt.Option, &s.ecs)
	}
	return r.finishEDNS(m, s, limit, qtype, start), Reply
}

// forwards reports whether queries of client outside the zones go upstream.
func (r *Responder) forwards(client netip.Addr) bool {
	for _, p := range r.ForwardAllow {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// finishEDNS adds the reply's OPT record when the query had one, then
// finishes.
func (r *Responder) finishEDNS(m *dns.Msg, s *Scratch, limit int, qtype uint16, start time.Time) []byte {
	if s.hasOpt {
		m.Extra = append(m.Extra, &s.opt)
	}
	return r.finish(m, s, limit, qtype, start)
}

// clientSubnet returns the client address an EDNS Client Subnet option
// names, masked to its source prefix; false when the option is malformed.
func clientSubnet(e *dns.EDNS0_SUBNET) (netip.Addr, bool) {
	var bits int
	switch e.Family {
	case 1:
		bits = 32
	case 2:
		bits = 128
	default:
		return netip.Addr{}, false
	}
	if int(e.SourceNetmask) > bits || e.SourceScope != 0 {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(e.Address)
	if !ok {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if a.BitLen() != bits {
		return netip.Addr{}, false
	}
	p, err := a.Prefix(int(e.SourceNetmask))
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr(), true
}

// resetMsg empties m for the next reply, keeping its sections' arrays. It
// clears them first: records made in a zone.RRBuf point into the snapshot
// they came from, which a record left behind would keep alive.
func resetMsg(m *dns.Msg) {
	clear(m.Answer)
	clear(m.Ns)
	clear(m.Extra)
	answer, ns, extra := m.Answer[:0], m.Ns[:0], m.Extra[:0]
	*m = dns.Msg{Compress: true}
	m.Answer, m.Ns, m.Extra = answer, ns, extra
}

// answer fills m for one question of class IN.
func (r *Responder) answer(m *dns.Msg, s *Scratch, q *dns.Question, client netip.Addr) {
	name := wire.Lower(q.Name)
	snap := r.Snapshot()
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return
	}
	if snap == nil {
		m.Rcode = dns.RcodeRefused
		s.outOfZone = true
		for _, z := range r.Zones {
			if zone.InZone(name, z) {
				m.Rcode = dns.RcodeServerFailure
				s.outOfZone = false
			}
		}
		return
	}
	apex, node := snap.LookupInto(name, &s.rrs)
	if apex == nil {
		m.Rcode = dns.RcodeRefused
		s.outOfZone = true
		return
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		// The zone is the cluster's to list, not the network's.
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	if node == nil && r.PodRecords {
		if r.podRecord(m, name, q.Qtype, apex) {
			return
		}
	}
	for hops := 0; ; hops++ {
		if node == nil {
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, apex.NegativeSOA)
			return
		}
		if node.CNAME() == nil || q.Qtype == dns.TypeCNAME {
			break
		}
		// A CNAME answers every type (RFC 1034 3.6.2); follow it while it
		// stays inside hdns's zones, and let the resolver do the rest.
		m.Answer = append(m.Answer, node.CNAME())
		if q.Qtype == dns.TypeANY || hops == maxCNAMEChain {
			return
		}
		target := node.CNAME().Target
		apex, node = snap.LookupInto(target, &s.rrs)
		if apex == nil {
			return
		}
	}
	before := len(m.Answer)
	r.records(m, s, node, q.Qtype, client)
	if len(m.Answer) == before {
		m.Ns = append(m.Ns, apex.NegativeSOA)
	}
}

// podRecord answers a pod name, <dashed-ip>.<namespace>.pod.<zone>, in a
// forward zone. It reports false when name is not one.
func (r *Responder) podRecord(m *dns.Msg, name string, qtype uint16, apex *zone.Apex) bool {
	if zone.InZone(apex.Name, "arpa.") {
		return false
	}
	rest, ok := strings.CutSuffix(name, ".pod."+apex.Name)
	if !ok {
		if name == "pod."+apex.Name {
			m.Ns = append(m.Ns, apex.NegativeSOA) // names exist below it
			return true
		}
		return false
	}
	label, ns, ok := strings.Cut(rest, ".")
	if !ok {
		if strings.Contains(rest, "\\") {
			return false
		}
		m.Ns = append(m.Ns, apex.NegativeSOA) // <namespace>.pod.<zone>
		return true
	}
	if strings.Contains(ns, ".") {
		return false
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
	if err != nil {
		if ip, err = netip.ParseAddr(strings.ReplaceAll(label, "-", ":")); err != nil {
			return false
		}
	}
	soa := apex.SOA.(*dns.SOA)
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: soa.Minttl}
	switch {
	case qtype == dns.TypeA && ip.Is4(), qtype == dns.TypeANY && ip.Is4():
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
	case qtype == dns.TypeAAAA && ip.Is6(), qtype == dns.TypeANY && ip.Is6():
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
	default:
		m.Ns = append(m.Ns, apex.NegativeSOA)
	}
	return true
}

// anyOrder is the order in which an ANY query picks the one RRset it is
// answered with (RFC 8482 minimal answers).
var anyOrder = []uint16{dns.TypeCNAME, dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypePTR, dns.TypeSOA, dns.TypeNS}

// records appends node's records of qtype to m.
func (r *Responder) records(m *dns.Msg, s *Scratch, node *zone.Node, qtype uint16, client netip.Addr) {
	switch qtype {
	case dns.TypeA:
		r.fixedOrChosen(m, s, node.A, nil, node.A4, qtype, client)
	case dns.TypeAAAA:
		r.fixedOrChosen(m, s, node.AAAA, nil, node.A6, qtype, client)
	case dns.TypeSRV:
		r.fixedOrChosen(m, s, node.Other().SRV, node.Other().Extra, node.SRVs, qtype, client)
	case dns.TypeTXT:
		m.Answer = append(m.Answer, node.Other().TXT...)
	case dns.TypePTR:
		m.Answer = append(m.Answer, node.PTR...)
	case dns.TypeSOA:
		m.Answer = append(m.Answer, node.Other().SOA...)
	case dns.TypeNS:
		m.Answer = append(m.Answer, node.Other().NS...)
	case dns.TypeCNAME:
		if node.CNAME() != nil {
			m.Answer = append(m.Answer, node.CNAME())
		}
	case dns.TypeANY:
		for _, t := range anyOrder {
			r.records(m, s, node, t, client)
			if len(m.Answer) > 0 {
				m.Extra = m.Extra[:0]
				return
			}
		}
	}
}

func (r *Responder) fixedOrChosen(m *dns.Msg, s *Scratch, fixed, extra []dns.RR, c *zone.Choice, qtype uint16, client netip.Addr) {
	if c == nil {
		m.Answer = append(m.Answer, fixed...)
		m.Extra = append(m.Extra, extra...)
		return
	}
	// The request lives in the scratch: passed to steps through an
	// interface, a local would escape to the heap on every query.
	s.preq = policy.Request{Qtype: qtype, Client: client, TTL: c.Set.TTL}
	if s.explain != nil {
		s.picked, s.explain.Steps = c.Set.Policy.Explain(&s.preq, c.Set.Candidates, c.In)
		s.explain.choice(c)
	} else {
		s.picked = c.Set.Policy.Pick(&s.preq, c.Set.Candidates, c.In, s.picked[:0], &s.policy)
	}
	s.usedClient = s.usedClient || c.Set.Policy.UsesClient()
	ordered := c.Glue() && c.Set.Policy.Reorders()
	for pos, i := range s.picked {
		start := len(m.Answer)
		m.Answer = c.AppendRRs(m.Answer, i, &s.rrs)
		if ordered {
			// RFC 2782 clients try lower priorities first: the policy's
			// order becomes the priorities.
			for _, rr := range m.Answer[start:] {
				rr.(*dns.SRV).Priority = uint16(min(pos, 65535))
			}
		}
		if c.Glue() {
			m.Extra = c.AppendGlue(m.Extra, i, &s.rrs)
		}
	}
}

// finish counts the reply and packs it within limit bytes.
func (r *Responder) finish(m *dns.Msg, s *Scratch, limit int, qtype uint16, start time.Time) []byte {
	out, err := m.PackBuffer(s.buf)
	if err == nil && len(out) > limit {
		out, err = wire.Truncate(out, limit)
	}
	if err != nil {
		// Only a bug packs badly: answer SERVFAIL with nothing else.
		resetMsg(m)
		m.Id, m.Response, m.Rcode = s.req.Id, true, dns.RcodeServerFailure
		m.Question = s.req.Question
		out, _ = m.PackBuffer(s.buf)
	}
	// PackBuffer uses buf only when its length suffices: keep it whole.
	if cap(out) > len(s.buf) {
		s.buf = out[:cap(out)]
	}
	if r.Metrics != nil {
		r.Metrics.Count(qtype, m.Rcode, time.Since(start).Seconds())
	}
	return out
}
