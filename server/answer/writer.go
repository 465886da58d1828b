package answer

import (
	"encoding/binary"
	"errors"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/wire"
	"github.com/hdns-dev/hdns/zone"
)

// writer packs a plan into the bytes miekg/dns's Msg.Pack makes of the
// same reply with compression on, cut as wire.Truncate cuts it: when the
// reply is over its limit, the additional section goes first (without
// TC), then the authority and the answer records that do not fit (with
// TC); the OPT record always stays. Records are written in order and
// compression pointers only point backwards, so cutting is dropping the
// records written last.
type writer struct {
	b    []byte
	comp []compEntry
	// asked is a plain question's name, whose suffixes at offset 12 are
	// compression targets without entries in comp.
	asked string
	// question is the first question's name in lower case, at offset 12
	// ("" when the reply has no question): records it owns point there,
	// so that their owner keeps the question's case.
	question string
	// last and lastOff cache the previous compressed name written and the
	// offset a pointer to it goes to (-1 when none can).
	last    string
	lastOff int
	// rrs holds one candidate's records while they are written; srvs the
	// SRV records of the picks written so far.
	rrs  []dns.RR
	srvs []*dns.SRV
	// counts of the answer, authority and additional sections.
	an, ns, ar int
	// room is the limit for the sections' records: the reply's limit less
	// the OPT record, which always stays.
	room int
	tc   bool
}

var errUnpackable = errors.New("answer: a record hdns cannot pack")

// write packs p, the reply to q, within limit bytes into w's buffer and
// returns it; it is valid until the next write. Only a record the zone
// should never hold fails it.
func (w *writer) write(q *query, p *plan, s *Scratch, limit int) ([]byte, error) {
	w.b = w.b[:0]
	w.comp, w.asked, w.question, w.last, w.lastOff = w.comp[:0], "", "", "", -1
	w.an, w.ns, w.ar, w.tc = 0, 0, 0, false
	clear(w.rrs[:cap(w.rrs)]) // so that no record of an old snapshot lingers
	clear(w.srvs[:cap(w.srvs)])
	w.srvs = w.srvs[:0]
	w.header(q, p)
	if p.question {
		if !w.questions(q) {
			return nil, errUnpackable
		}
		if q.qdcount > 0 {
			w.question = q.lower
		}
	}
	optLen := 0
	if p.opt {
		optLen = 11
		if p.ecs {
			optLen += 8 + ecsLen(&q.ecs)
		}
	}
	w.room = limit - optLen
	if !w.sections(p, s) {
		return nil, errUnpackable
	}
	if p.opt {
		w.opt(q, p)
		w.ar++
	}
	if p.tsigError != 0 {
		end := len(w.b)
		if !w.tsig(q.tsig, q.id, p.tsigError) {
			return nil, errUnpackable
		}
		if w.ar++; len(w.b) > limit {
			w.b, w.ar, w.tc = w.b[:end], w.ar-1, true
		}
	}
	if w.tc {
		w.b[2] |= 0x02
	}
	binary.BigEndian.PutUint16(w.b[6:], uint16(w.an))
	binary.BigEndian.PutUint16(w.b[8:], uint16(w.ns))
	binary.BigEndian.PutUint16(w.b[10:], uint16(w.ar))
	return w.b, nil
}

// header appends the header, its counts left for write.
func (w *writer) header(q *query, p *plan) {
	flags := 0x80 | q.opcode<<3
	if p.aa {
		flags |= 0x04
	}
	if p.rd {
		flags |= 0x01
	}
	rcode := byte(p.rcode & 0xF)
	if p.cd {
		rcode |= 0x10
	}
	qd := 0
	if p.question {
		qd = q.qdcount
	}
	w.b = append(w.b, byte(q.id>>8), byte(q.id), flags, rcode, byte(qd>>8), byte(qd), 0, 0, 0, 0, 0, 0)
}

// questions appends the query's questions as asked.
func (w *writer) questions(q *query) bool {
	if q.plain {
		w.b = append(w.b, q.qsection...)
		w.asked = q.asked
		return true
	}
	for i := range q.questions {
		qn := &q.questions[i]
		if !w.name(qn.Name, true) {
			return false
		}
		w.b = binary.BigEndian.AppendUint16(w.b, qn.Qtype)
		w.b = binary.BigEndian.AppendUint16(w.b, qn.Qclass)
	}
	return true
}

// sections appends the answer, authority and additional records of p
// that fit.
func (w *writer) sections(p *plan, s *Scratch) bool {
	for _, rr := range p.chain {
		if !w.answerRR(rr) {
			return false
		}
	}
	for _, rr := range p.fixed {
		if !w.answerRR(rr) {
			return false
		}
	}
	picks := 0
	if p.choice != nil && !w.tc {
		var ok bool
		if picks, ok = w.picks(p.choice, p.picked, &s.rrs); !ok {
			return false
		}
	}
	if p.soa != nil && !w.tc && (!p.soaIfNoPicks || picks == 0) {
		end := len(w.b)
		if !w.rr(p.soa) {
			return false
		}
		if w.ns = 1; len(w.b) > w.room {
			w.b, w.ns, w.tc = w.b[:end], 0, true
		}
	}
	if w.tc {
		return true
	}
	return w.additional(p, s)
}

// answerRR appends an answer record, or cuts it and sets tc when it does
// not fit.
func (w *writer) answerRR(rr dns.RR) bool {
	if w.tc {
		return true
	}
	end := len(w.b)
	if !w.rr(rr) {
		return false
	}
	if len(w.b) > w.room {
		w.b, w.tc = w.b[:end], true
		return true
	}
	w.an++
	return true
}

// picks appends the answer records of the picked candidates of c and
// returns how many it appended or cut. SRV records take the policy's
// order as their priorities when it reorders (RFC 2782 clients try lower
// priorities first).
func (w *writer) picks(c *zone.Choice, picked []int, buf *zone.RRBuf) (n int, ok bool) {
	if c.Qtype != dns.TypeSRV {
		return w.addrPicks(c, picked)
	}
	ordered := c.Set.Policy.Reorders()
	for pos, i := range picked {
		w.rrs = c.AppendRRs(w.rrs[:0], i, buf)
		check := c.MayRepeat(i)
		for _, rr := range w.rrs {
			srv := rr.(*dns.SRV)
			if ordered {
				srv.Priority = uint16(min(pos, 65535))
			}
			if check && w.sentSRV(srv) {
				continue
			}
			w.srvs = append(w.srvs, srv)
			n++
			if !w.answerRR(srv) {
				return 0, false
			}
			if w.tc {
				return n, true
			}
		}
	}
	return n, true
}

// sentSRV reports whether a pick's SRV record equal to srv is written
// already. They share owner, class and TTL.
func (w *writer) sentSRV(srv *dns.SRV) bool {
	for _, s := range w.srvs {
		if s.Priority == srv.Priority && s.Weight == srv.Weight && s.Port == srv.Port && s.Target == srv.Target {
			return true
		}
	}
	return false
}

// addrPicks is picks for an A or AAAA choice: the records are written
// from the candidates' addresses, each after the same owner, type, class,
// TTL and data length.
func (w *writer) addrPicks(c *zone.Choice, picked []int) (n int, ok bool) {
	size := byte(4)
	if c.Qtype == dns.TypeAAAA {
		size = 16
	}
	var fixed [10]byte
	appendRRHeader(fixed[:0], c.Qtype, dns.ClassINET, c.Set.TTL)
	fixed[9] = size
	for _, i := range picked {
		ip := c.Addr(i)
		if ip == nil {
			continue
		}
		end := len(w.b)
		if !w.owner(c.Owner) {
			return 0, false
		}
		b := append(append(w.b, fixed[:]...), ip...)
		if n++; len(b) > w.room {
			w.b, w.tc = b[:end], true
			return n, true
		}
		w.b = b
		w.an++
	}
	return n, true
}

// additional appends the fixed additional records and the picks' glue,
// or none of them when they do not all fit.
func (w *writer) additional(p *plan, s *Scratch) bool {
	start := len(w.b)
	for _, rr := range p.extra {
		if !w.rr(rr) {
			return false
		}
		w.ar++
	}
	if p.glue {
		for _, i := range p.picked {
			w.rrs = p.choice.AppendGlue(w.rrs[:0], i, &s.rrs)
			for _, rr := range w.rrs {
				if !w.rr(rr) {
					return false
				}
				w.ar++
			}
		}
	}
	if len(w.b) > w.room {
		w.b, w.ar = w.b[:start], 0
	}
	return true
}

// opt appends the reply's OPT record: version 0, hdns's buffer size, the
// query's DO bit, the upper bits of an extended rcode, and the query's
// client subnet option, its scope the plan's bounded by the source
// prefix: 0 when the answer did not depend on the client (RFC 7871
// 7.2.1).
func (w *writer) opt(q *query, p *plan) {
	var do byte
	if q.do {
		do = 0x80
	}
	rdlen := 0
	if p.ecs {
		rdlen = 8 + ecsLen(&q.ecs)
	}
	w.b = append(w.b, 0, 0, byte(dns.TypeOPT), wire.MaxUDPSize>>8, wire.MaxUDPSize&0xFF,
		byte(p.rcode>>4), 0, do, 0, byte(rdlen>>8), byte(rdlen))
	if !p.ecs {
		return
	}
	e := &q.ecs
	scope := min(p.scope, e.bits)
	alen := ecsLen(e)
	w.b = append(w.b, 0, byte(dns.EDNS0SUBNET), 0, byte(4+alen), byte(e.family>>8), byte(e.family), e.bits, scope)
	if p.subnet.Is4() {
		a := p.subnet.As4()
		w.b = append(w.b, a[:alen]...)
	} else {
		a := p.subnet.As16()
		w.b = append(w.b, a[:alen]...)
	}
}

// tsig appends the unsigned TSIG record of an error reply to a query
// signed with t (RFC 8945 5.3.2): t's key, algorithm, time signed and
// fudge, no MAC, the query's id, the error, no other data. The owner is
// compressed, the algorithm is not, as miekg/dns packs them.
func (w *writer) tsig(t *dns.TSIG, id, tsigError uint16) bool {
	if !w.name(t.Hdr.Name, true) {
		return false
	}
	w.b = appendRRHeader(w.b, dns.TypeTSIG, dns.ClassANY, 0)
	w.b = append(w.b, 0, 0)
	start := len(w.b)
	if !w.name(t.Algorithm, false) {
		return false
	}
	ts := t.TimeSigned
	w.b = append(w.b, byte(ts>>40), byte(ts>>32), byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts),
		byte(t.Fudge>>8), byte(t.Fudge), 0, 0, byte(id>>8), byte(id), byte(tsigError>>8), byte(tsigError), 0, 0)
	binary.BigEndian.PutUint16(w.b[start-2:], uint16(len(w.b)-start))
	return true
}

// ecsLen is the length of the address of a client subnet option: as many
// octets as its source prefix needs.
func ecsLen(e *ecsOption) int { return (int(e.bits) + 7) / 8 }

// appendRRHeader appends a record's type, class, TTL; the owner name
// comes before, the data length after.
func appendRRHeader(b []byte, rrtype, class uint16, ttl uint32) []byte {
	return append(b, byte(rrtype>>8), byte(rrtype), byte(class>>8), byte(class),
		byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl))
}
