package answer

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/topology"
	"github.com/hdns-dev/hdns/zone"
)

// plan is a reply before it is written: its header, and its sections as
// fixed records, the records of a policy's picks, and the SOA.
type plan struct {
	rcode  int
	qtype  uint16 // the question's type, 0 when the reply answers none
	aa     bool
	rd, cd bool
	// question: the reply repeats the query's questions (a reply to a
	// query that does not parse, or whose header is refused, has none).
	question bool
	// opt: the reply carries an OPT record; ecs: with the query's client
	// subnet option, subnet its address masked to its prefix, its scope
	// set by scope.
	opt, ecs bool
	subnet   netip.Addr
	// scope is how many leading bits of the client's address the answer
	// depends on: 0 when every client gets it, the prefix that located
	// the client when it depends on the client's place, fullScope when it
	// depends on the address itself. The reply's ECS scope is scope
	// bounded by the query's source prefix (RFC 7871 7.2.1).
	scope uint8
	// located is set when the answer's choice located the client; client
	// is then where it is (NoPlace when it is unknown), for counting the
	// answer's locality.
	located bool
	client  clientPlace
	// tsigError, when set, is the TSIG error of the reply's unsigned TSIG
	// record, which goes after the OPT and is cut (with TC) when the reply
	// does not fit.
	tsigError uint16
	// outOfZone is set for an IN question outside every zone.
	outOfZone bool

	// The answer section is chain, the CNAMEs followed, then fixed, the
	// records of the name answered, or the records of the picked
	// candidates of choice. soa, when set, is the authority section; with
	// soaIfNoPicks, only when the picks make no record. The additional
	// section is extra, followed by the picks' glue when glue is set.
	// fixed and extra alias the snapshot's slices, or one.
	chain        []dns.RR
	fixed        []dns.RR
	choice       *zone.Choice
	picked       []int
	glue         bool
	soa          dns.RR
	soaIfNoPicks bool
	extra        []dns.RR
	one          [1]dns.RR
}

// reset empties p for the next query, keeping its slices' arrays. It
// clears chain first: records point into the snapshot they came from,
// which a record left behind would keep alive.
func (p *plan) reset() {
	clear(p.chain)
	*p = plan{chain: p.chain[:0], picked: p.picked[:0]}
}

// single is the one record rr as fixed records.
func (p *plan) single(rr dns.RR) []dns.RR {
	p.one[0] = rr
	return p.one[:]
}

// planReply fills s.plan with the reply to q from client, or returns
// Forward for a query that goes upstream. source is the packet's sender.
func (r *Responder) planReply(q *query, source netip.Addr, s *Scratch) Result {
	p := &s.plan
	p.reset()
	p.rcode = dns.RcodeFormatError
	if q.malformed || q.opts > 1 || q.badTSIG {
		// The header is all there is to trust: a fresh one.
		return Reply
	}
	// EDNS (RFC 6891) first, so that every reply to an EDNS query
	// carries an OPT: version 0, hdns's buffer size, the DO bit.
	p.opt = q.hasOpt()
	if p.opt && q.version != 0 {
		// BADVERS keeps the question (as Knot does), so that the client
		// can match it to its query.
		p.rcode = dns.RcodeBadVers
		p.echo(q)
		return Reply
	}
	if q.tsig != nil {
		// hdns holds no TSIG keys, so every key is unknown: NOTAUTH with
		// an unsigned BADKEY TSIG (RFC 8945 5.2.1), whatever the opcode
		// and wherever the name.
		p.rcode, p.tsigError = dns.RcodeNotAuth, dns.RcodeBadKey
		p.echo(q)
		return Reply
	}
	if q.opcode != dns.OpcodeQuery {
		p.rcode = dns.RcodeNotImplemented
		return Reply
	}
	p.echo(q)
	if q.qdcount != 1 {
		return Reply
	}
	if q.qtype == 0 {
		// Type 0 is reserved (RFC 6895 3.1): no name has records of it.
		// NOTIMP, as Knot answers, inside the zones and out.
		p.rcode = dns.RcodeNotImplemented
		return Reply
	}
	client := source
	if q.hasECS {
		var ok bool
		if p.subnet, ok = q.ecs.client(); !ok {
			return Reply // RFC 7871 7.1.1: a malformed option is a format error
		}
		// A /0 subnet names nobody: the asker stays the client.
		if q.ecs.bits > 0 {
			client = p.subnet
		}
	}
	p.rcode = dns.RcodeSuccess
	r.answer(p, s, q, client)
	if p.outOfZone && r.forwards(source) {
		return Forward
	}
	p.ecs = q.hasECS
	return Reply
}

// echo copies RD, CD and the questions of q into the reply, and the
// question's type when there is one question.
func (p *plan) echo(q *query) {
	p.rd, p.cd, p.question = q.rd, q.cd, true
	if q.qdcount == 1 {
		p.qtype = q.qtype
	}
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

// answer plans the answer to the question of q, of class IN when it is
// answered.
func (r *Responder) answer(p *plan, s *Scratch, q *query, client netip.Addr) {
	if q.qclass != dns.ClassINET {
		p.rcode = dns.RcodeRefused
		return
	}
	snap := r.Snapshot()
	if snap == nil {
		p.rcode = dns.RcodeRefused
		p.outOfZone = true
		for _, z := range r.Zones {
			if zone.InZone(q.lower, z) {
				p.rcode = dns.RcodeServerFailure
				p.outOfZone = false
			}
		}
		return
	}
	apex, node := snap.LookupInto(q.lower, &s.rrs)
	if apex == nil {
		p.rcode = dns.RcodeRefused
		p.outOfZone = true
		return
	}
	if q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR {
		// The zone is the cluster's to list, not the network's.
		p.rcode = dns.RcodeRefused
		return
	}
	p.aa = true
	if node == nil && r.PodRecords {
		if rr, ok := podRecord(q.lower, q.qtype, apex); ok {
			if rr == nil {
				p.soa = apex.NegativeSOA
			} else {
				p.fixed = p.single(rr)
			}
			return
		}
	}
	r.follow(p, s, snap, apex, node, q.qtype, client)
}

// follow plans the records of node, or of the in-zone names its CNAME
// leads to (RFC 1034 3.6.2), and the SOA when there are none.
func (r *Responder) follow(p *plan, s *Scratch, snap *zone.Snapshot, apex *zone.Apex, node *zone.Node, qtype uint16, client netip.Addr) {
	for hops := 0; ; hops++ {
		if node == nil {
			p.rcode = dns.RcodeNameError
			p.soa = apex.NegativeSOA
			return
		}
		if node.CNAME() == nil || qtype == dns.TypeCNAME {
			break
		}
		// A CNAME answers every type; follow it while it stays inside
		// hdns's zones, and let the resolver do the rest.
		p.chain = append(p.chain, node.CNAME())
		if qtype == dns.TypeANY || hops == maxCNAMEChain {
			return
		}
		apex, node = snap.LookupInto(node.CNAME().Target, &s.rrs)
		if apex == nil {
			return
		}
	}
	r.records(p, s, node, qtype, client)
	if len(p.fixed) == 0 {
		p.soa, p.soaIfNoPicks = apex.NegativeSOA, p.choice != nil
	}
}

// podRecord is the answer to a pod name,
// <dashed-ip>.<namespace>.pod.<zone>, in a forward zone: the record of
// its address, or nil when the name exists without a record of qtype. ok
// is false when name is not a pod name.
func podRecord(name string, qtype uint16, apex *zone.Apex) (_ dns.RR, ok bool) {
	if zone.InZone(apex.Name, "arpa.") {
		return nil, false
	}
	rest, ok := strings.CutSuffix(name, ".pod."+apex.Name)
	if !ok {
		return nil, name == "pod."+apex.Name // names exist below it
	}
	label, ns, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, !strings.Contains(rest, "\\") // <namespace>.pod.<zone>
	}
	if strings.Contains(ns, ".") {
		return nil, false
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
	if err != nil {
		if ip, err = netip.ParseAddr(strings.ReplaceAll(label, "-", ":")); err != nil {
			return nil, false
		}
	}
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: apex.SOA.(*dns.SOA).Minttl}
	switch {
	case ip.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: ip.AsSlice()}, true
	case ip.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
		hdr.Rrtype = dns.TypeAAAA
		return &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()}, true
	}
	return nil, true
}

// anyOrder is the order in which an ANY query picks the one RRset it is
// answered with (RFC 8482 minimal answers).
var anyOrder = []uint16{dns.TypeCNAME, dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypePTR, dns.TypeSOA, dns.TypeNS}

// records plans node's records of qtype.
func (r *Responder) records(p *plan, s *Scratch, node *zone.Node, qtype uint16, client netip.Addr) {
	switch qtype {
	case dns.TypeA:
		r.fixedOrChosen(p, s, node.FixedA, nil, node.ChosenA, qtype, client)
	case dns.TypeAAAA:
		r.fixedOrChosen(p, s, node.FixedAAAA, nil, node.ChosenAAAA, qtype, client)
	case dns.TypeSRV:
		r.fixedOrChosen(p, s, node.Rare().SRV, node.Rare().Extra, node.ChosenSRV, qtype, client)
	case dns.TypeTXT:
		p.fixed = node.Rare().TXT
	case dns.TypePTR:
		p.fixed = node.PTR
	case dns.TypeSOA:
		p.fixed = node.Rare().SOA
	case dns.TypeNS:
		p.fixed, p.extra = node.Rare().NS, node.Rare().Extra
	case dns.TypeCNAME:
		if node.CNAME() != nil {
			p.fixed = p.single(node.CNAME())
		}
	case dns.TypeANY:
		for _, t := range anyOrder {
			r.records(p, s, node, t, client)
			if len(p.fixed) > 0 || p.choice != nil && pickedRecords(p.choice, p.picked, &s.rrs, &s.w.rrs) > 0 {
				p.extra, p.glue = nil, false
				return
			}
			p.fixed, p.extra, p.choice, p.picked, p.located = nil, nil, nil, p.picked[:0], false
		}
	}
}

// fixedOrChosen plans fixed records, or else the picks of choice c.
func (r *Responder) fixedOrChosen(p *plan, s *Scratch, fixed, extra []dns.RR, c *zone.Choice, qtype uint16, client netip.Addr) {
	if c == nil {
		p.fixed, p.extra = fixed, extra
		return
	}
	// The request lives in the scratch: passed to steps through an
	// interface, a local would escape to the heap on every query.
	s.preq = policy.Request{Qtype: qtype, Client: client, TTL: c.Set.TTL}
	if r.Locator != nil && c.Set.Policy.UsesLocation() {
		r.locate(p, &s.preq, client)
	}
	if s.explain != nil {
		p.picked, s.explain.Steps = c.Set.Policy.Explain(&s.preq, c.Set.Candidates, c.In)
		s.explain.choice(c)
		s.explain.place(c, p.picked, p)
	} else {
		p.picked = c.Set.Policy.Pick(&s.preq, c.Set.Candidates, c.In, p.picked[:0], &s.policy)
	}
	if c.Set.Policy.UsesClient() {
		p.scope = fullScope
	}
	p.choice, p.glue = c, c.Glue()
}

// fullScope is the scope of an answer that depends on the client's
// whole address: the source prefix, whatever its length.
const fullScope = 128

// clientPlace is where a located client is, interned.
type clientPlace struct {
	node, zone policy.Place
	known      bool
}

// locate sets where the client is in req and p, and widens p's scope to
// the prefix that located it. An unknown client's answer (every
// candidate) holds for its own address only: the addresses around it may
// be located, and their answers differ, so a cache must not share it.
func (r *Responder) locate(p *plan, req *policy.Request, client netip.Addr) {
	l := r.Locator.Locate(client)
	req.Node, req.Zone = policy.PlaceOf(l.Node), policy.PlaceOf(l.Zone)
	p.located = true
	p.client = clientPlace{node: req.Node, zone: req.Zone, known: l.By != topology.Unknown}
	bits := l.Bits
	if !p.client.known {
		bits = fullScope
	}
	p.scope = max(p.scope, bits)
}

// locality is where the first pick runs, seen from the located client.
func (p *plan) locality() locality {
	return p.client.locality(&p.choice.Set.Candidates[p.picked[0]])
}

// locality is where e runs, seen from the client at c.
func (c clientPlace) locality(e *policy.Endpoint) locality {
	switch {
	case !c.known:
		return unknownClient
	case c.node != policy.NoPlace && e.Node == c.node:
		return sameNode
	case c.zone != policy.NoPlace && e.Zone == c.zone:
		return sameZone
	}
	return otherZone
}

// pickedRecords counts the answer records of the picked candidates of c.
func pickedRecords(c *zone.Choice, picked []int, buf *zone.RRBuf, rrs *[]dns.RR) int {
	n := 0
	for _, i := range picked {
		if c.Qtype != dns.TypeSRV {
			if c.Addr(i) != nil {
				n++
			}
			continue
		}
		*rrs = c.AppendRRs((*rrs)[:0], i, buf)
		n += len(*rrs)
	}
	return n
}
