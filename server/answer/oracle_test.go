package answer

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server/wire"
	"github.com/hdns-dev/hdns/zone"
)

// The oracle answers queries the general way, independently of the plan
// and its writer: miekg/dns unpacks the query, the reply is a dns.Msg
// packed with compression and cut by wire.Truncate. The tests require the
// responder's bytes to equal the oracle's.

// oracle is the state of one goroutine's oracle answers.
type oracle struct {
	req, resp dns.Msg
	opt       dns.OPT
	hasOpt    bool
	ecs       dns.EDNS0_SUBNET
	tsig      dns.TSIG
	// usedClient is set when the answer depended on who asked;
	// outOfZone for an IN question outside every zone.
	usedClient, outOfZone bool
	picked                []int
	preq                  policy.Request
	policy                policy.Scratch
	rrs                   zone.RRBuf
}

// respond answers pkt from client as r would, with the policies of r's
// snapshot; nil for no reply, and forward set for a query that goes
// upstream.
func (o *oracle) respond(r *Responder, pkt []byte, client netip.Addr, tcp bool) (out []byte, forward bool) {
	if len(pkt) < wire.HeaderLen || pkt[2]&0x80 != 0 {
		return nil, false
	}
	req, m := &o.req, &o.resp
	oracleReset(m)
	o.rrs.Reset()
	o.outOfZone = false
	source := client
	limit := 512
	if tcp {
		limit = dns.MaxMsgSize
	}
	if err := req.Unpack(pkt); err != nil || !oracleExact(pkt, req) {
		m.Id = binary.BigEndian.Uint16(pkt)
		m.Response = true
		m.Opcode = int(pkt[2]>>3) & 0xF
		m.Rcode = dns.RcodeFormatError
		return o.finish(m, limit), false
	}
	m.Id, m.Response, m.Opcode = req.Id, true, req.Opcode
	var reqOpt *dns.OPT
	for _, rr := range req.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			if reqOpt != nil {
				m.Rcode = dns.RcodeFormatError
				return o.finish(m, limit), false
			}
			reqOpt = opt
		}
	}
	if t := req.IsTsig(); oracleTSIGs(req) > 0 && (t == nil || t.Algorithm == "") || oracleTSIGs(req) > 1 {
		m.Rcode = dns.RcodeFormatError
		return o.finish(m, limit), false
	}
	var ecs *dns.EDNS0_SUBNET
	o.hasOpt = reqOpt != nil
	if reqOpt != nil {
		o.opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.opt.SetUDPSize(wire.MaxUDPSize)
		o.opt.SetDo(reqOpt.Do())
		if !tcp {
			limit = min(max(int(reqOpt.UDPSize()), 512), wire.MaxUDPSize)
		}
		if reqOpt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			m.RecursionDesired, m.CheckingDisabled = req.RecursionDesired, req.CheckingDisabled
			m.Question = req.Question
			return o.finishEDNS(m, limit), false
		}
		for _, opt := range reqOpt.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				ecs = e
			}
		}
	}
	if t := req.IsTsig(); t != nil {
		return o.badKey(m, t, limit), false
	}
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return o.finishEDNS(m, limit), false
	}
	m.RecursionDesired, m.CheckingDisabled = req.RecursionDesired, req.CheckingDisabled
	m.Question = req.Question
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return o.finishEDNS(m, limit), false
	}
	q := req.Question[0]
	if q.Qtype == 0 {
		m.Rcode = dns.RcodeNotImplemented
		return o.finishEDNS(m, limit), false
	}
	if ecs != nil {
		addr, ok := oracleSubnet(ecs)
		if !ok {
			m.Rcode = dns.RcodeFormatError
			return o.finishEDNS(m, limit), false
		}
		if ecs.SourceNetmask > 0 {
			client = addr
		}
	}
	o.usedClient = false
	o.answer(r, m, &q, client)
	oracleOwnersAsAsked(m, q.Name)
	if o.outOfZone && r.forwards(source) {
		return nil, true
	}
	if ecs != nil {
		o.ecs = *ecs
		o.ecs.SourceScope = 0
		if o.usedClient {
			o.ecs.SourceScope = ecs.SourceNetmask
		}
		o.opt.Option = append(o.opt.Option, &o.ecs)
	}
	return o.finishEDNS(m, limit), false
}

// oracleTSIGs counts the TSIG records of req, in every section.
func oracleTSIGs(req *dns.Msg) int {
	n := 0
	for _, rr := range slices.Concat(req.Answer, req.Ns, req.Extra) {
		if rr.Header().Rrtype == dns.TypeTSIG {
			n++
		}
	}
	return n
}

// badKey is the reply to a query signed with t, a key nobody knows:
// NOTAUTH, the question, the OPT, and an unsigned TSIG with error BADKEY;
// without the TSIG and with TC when that does not fit.
func (o *oracle) badKey(m *dns.Msg, t *dns.TSIG, limit int) []byte {
	m.Rcode = dns.RcodeNotAuth
	m.RecursionDesired, m.CheckingDisabled = o.req.RecursionDesired, o.req.CheckingDisabled
	m.Question = o.req.Question
	if o.hasOpt {
		m.Extra = append(m.Extra, &o.opt)
	}
	o.tsig = dns.TSIG{
		Hdr:       dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: t.Algorithm, TimeSigned: t.TimeSigned, Fudge: t.Fudge,
		OrigId: o.req.Id, Error: dns.RcodeBadKey,
	}
	m.Extra = append(m.Extra, &o.tsig)
	if out, err := m.Pack(); err == nil && len(out) > limit {
		m.Extra = m.Extra[:len(m.Extra)-1]
		m.Truncated = true
	}
	return o.finish(m, limit)
}

// oracleExact reports whether the records miekg/dns unpacked from pkt are
// all of pkt, as many as its header counts, with OPT only among the
// additional records.
func oracleExact(pkt []byte, req *dns.Msg) bool {
	off := wire.HeaderLen
	var err error
	for range req.Question {
		if _, off, err = dns.UnpackDomainName(pkt, off); err != nil {
			return false
		}
		off += 4
	}
	sections := []int{len(req.Answer), len(req.Ns), len(req.Extra)}
	for i, n := range sections {
		for range n {
			var rr dns.RR
			if rr, off, err = dns.UnpackRR(pkt, off); err != nil {
				return false
			}
			if _, isOpt := rr.(*dns.OPT); isOpt && i < 2 {
				return false
			}
		}
	}
	return off == len(pkt) && len(req.Question) == int(binary.BigEndian.Uint16(pkt[4:])) &&
		sections[0] == int(binary.BigEndian.Uint16(pkt[6:])) && sections[1] == int(binary.BigEndian.Uint16(pkt[8:])) &&
		sections[2] == int(binary.BigEndian.Uint16(pkt[10:]))
}

// oracleOwnersAsAsked replaces the records of m owned by the question's
// name, in lower case, with copies owned by the name as asked.
func oracleOwnersAsAsked(m *dns.Msg, asked string) {
	lower := wire.Lower(asked)
	if lower == "." {
		return
	}
	for _, section := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for i, rr := range section {
			if rr.Header().Name == lower {
				section[i] = dns.Copy(rr)
				section[i].Header().Name = asked
			}
		}
	}
}

func (o *oracle) finishEDNS(m *dns.Msg, limit int) []byte {
	if o.hasOpt {
		m.Extra = append(m.Extra, &o.opt)
	}
	return o.finish(m, limit)
}

func (o *oracle) finish(m *dns.Msg, limit int) []byte {
	out, err := m.Pack()
	if err == nil && len(out) > limit {
		out, err = wire.Truncate(out, limit)
	}
	if err != nil {
		oracleReset(m)
		m.Id, m.Response, m.Rcode = o.req.Id, true, dns.RcodeServerFailure
		m.Question = o.req.Question
		out, _ = m.Pack()
	}
	return out
}

// oracleSubnet is the client subnet option's address, masked; false when
// the option is malformed.
func oracleSubnet(e *dns.EDNS0_SUBNET) (netip.Addr, bool) {
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
	if a = a.Unmap(); a.BitLen() != bits {
		return netip.Addr{}, false
	}
	p, err := a.Prefix(int(e.SourceNetmask))
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr(), true
}

func oracleReset(m *dns.Msg) {
	answer, ns, extra := m.Answer[:0], m.Ns[:0], m.Extra[:0]
	*m = dns.Msg{Compress: true}
	m.Answer, m.Ns, m.Extra = answer, ns, extra
}

func (o *oracle) answer(r *Responder, m *dns.Msg, q *dns.Question, client netip.Addr) {
	name := wire.Lower(q.Name)
	snap := r.Snapshot()
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return
	}
	if snap == nil {
		m.Rcode = dns.RcodeRefused
		o.outOfZone = true
		for _, z := range r.Zones {
			if zone.InZone(name, z) {
				m.Rcode = dns.RcodeServerFailure
				o.outOfZone = false
			}
		}
		return
	}
	apex, node := snap.LookupInto(name, &o.rrs)
	if apex == nil {
		m.Rcode = dns.RcodeRefused
		o.outOfZone = true
		return
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	if node == nil && r.PodRecords {
		if rr, ok := podRecord(name, q.Qtype, apex); ok {
			if rr == nil {
				m.Ns = append(m.Ns, apex.NegativeSOA)
			} else {
				m.Answer = append(m.Answer, rr)
			}
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
		m.Answer = append(m.Answer, node.CNAME())
		if q.Qtype == dns.TypeANY || hops == maxCNAMEChain {
			return
		}
		apex, node = snap.LookupInto(node.CNAME().Target, &o.rrs)
		if apex == nil {
			return
		}
	}
	before := len(m.Answer)
	o.records(m, node, q.Qtype, client)
	if len(m.Answer) == before {
		m.Ns = append(m.Ns, apex.NegativeSOA)
	}
}

func (o *oracle) records(m *dns.Msg, node *zone.Node, qtype uint16, client netip.Addr) {
	switch qtype {
	case dns.TypeA:
		o.fixedOrChosen(m, node.FixedA, nil, node.ChosenA, qtype, client)
	case dns.TypeAAAA:
		o.fixedOrChosen(m, node.FixedAAAA, nil, node.ChosenAAAA, qtype, client)
	case dns.TypeSRV:
		o.fixedOrChosen(m, node.Rare().SRV, node.Rare().Extra, node.ChosenSRV, qtype, client)
	case dns.TypeTXT:
		m.Answer = append(m.Answer, node.Rare().TXT...)
	case dns.TypePTR:
		m.Answer = append(m.Answer, node.PTR...)
	case dns.TypeSOA:
		m.Answer = append(m.Answer, node.Rare().SOA...)
	case dns.TypeNS:
		m.Answer = append(m.Answer, node.Rare().NS...)
		m.Extra = append(m.Extra, node.Rare().Extra...)
	case dns.TypeCNAME:
		if node.CNAME() != nil {
			m.Answer = append(m.Answer, node.CNAME())
		}
	case dns.TypeANY:
		for _, t := range anyOrder {
			o.records(m, node, t, client)
			if len(m.Answer) > 0 {
				m.Extra = m.Extra[:0]
				return
			}
		}
	}
}

func (o *oracle) fixedOrChosen(m *dns.Msg, fixed, extra []dns.RR, c *zone.Choice, qtype uint16, client netip.Addr) {
	if c == nil {
		m.Answer = append(m.Answer, fixed...)
		m.Extra = append(m.Extra, extra...)
		return
	}
	o.preq = policy.Request{Qtype: qtype, Client: client, TTL: c.Set.TTL}
	o.picked = c.Set.Policy.Pick(&o.preq, c.Set.Candidates, c.In, o.picked[:0], &o.policy)
	o.usedClient = o.usedClient || c.Set.Policy.UsesClient()
	ordered := c.Glue() && c.Set.Policy.Reorders()
	first := len(m.Answer)
	for pos, i := range o.picked {
		start := len(m.Answer)
		m.Answer = c.AppendRRs(m.Answer, i, &o.rrs)
		if ordered {
			for _, rr := range m.Answer[start:] {
				rr.(*dns.SRV).Priority = uint16(min(pos, 65535))
			}
		}
		if c.Glue() {
			m.Extra = c.AppendGlue(m.Extra, i, &o.rrs)
		}
	}
	// Identical records are sent once (RFC 2181 5).
	kept := m.Answer[:first]
	for _, rr := range m.Answer[first:] {
		if !slices.ContainsFunc(kept[first:], func(k dns.RR) bool { return dns.IsDuplicate(k, rr) }) {
			kept = append(kept, rr)
		}
	}
	m.Answer = kept
}
