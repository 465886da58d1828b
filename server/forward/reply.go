package forward

import (
	"context"
	"slices"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/wire"
)

// Reply resolves upstream the query in pkt, a query of one question that
// the answering side handed to forwarding, and returns the client's
// reply: the upstream's answer under the client's ID, question and EDNS,
// with RA set and AA cleared, cut to the transport's limit; SERVFAIL when
// no upstream answered. out is nil when pkt does not parse as such a
// query. qtype and rcode are the question's type and the reply's code,
// for the caller's metrics. It blocks for up to the upstreams' timeouts
// and allocates its own buffers.
func (f *Forwarder) Reply(ctx context.Context, pkt []byte, tcp bool) (out []byte, qtype uint16, rcode int) {
	var req dns.Msg
	if err := req.Unpack(pkt); err != nil || len(req.Question) != 1 {
		return nil, 0, 0
	}
	up, err := f.Exchange(ctx, &req)
	m := new(dns.Msg)
	if err == nil {
		*m = *up
		m.Extra = slices.DeleteFunc(slices.Clone(m.Extra), func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	} else {
		m.Rcode = dns.RcodeServerFailure
	}
	m.Id, m.Response, m.Opcode = req.Id, true, req.Opcode
	m.Question = req.Question
	m.RecursionDesired, m.CheckingDisabled = req.RecursionDesired, req.CheckingDisabled
	m.RecursionAvailable, m.Authoritative, m.Truncated = true, false, false
	m.Compress = true
	o := req.IsEdns0()
	var udpSize uint16
	if o != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(wire.MaxUDPSize)
		opt.SetDo(o.Do())
		m.Extra = append(m.Extra, opt)
		udpSize = o.UDPSize()
	}
	limit := wire.Limit(tcp, o != nil, udpSize)
	out, err = m.Pack()
	if err == nil && len(out) > limit {
		out, err = wire.Truncate(out, limit)
	}
	if err != nil {
		return nil, 0, 0
	}
	return out, req.Question[0].Qtype, m.Rcode
}
