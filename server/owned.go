package server

import "github.com/miekg/dns"

// ownedRRs holds copies of a Choice's records under the Choice's owner
// name, for the reply being built: the snapshot shares one record between
// an endpoint's own name and the Service's answers (zone.Choice.Owner).
// The copies live in slices that the next query reuses, so that steady
// state costs no allocation; a reply must be packed before its Scratch
// answers again.
type ownedRRs struct {
	a    []dns.A
	aaaa []dns.AAAA
	srvs []dns.SRV
}

func (o *ownedRRs) reset() {
	o.a, o.aaaa, o.srvs = o.a[:0], o.aaaa[:0], o.srvs[:0]
}

// withOwner returns rr when its owner is owner, else a copy under owner.
// When a slice grows, records already handed out stay in the old array,
// which their reply keeps alive.
func (o *ownedRRs) withOwner(rr dns.RR, owner string) dns.RR {
	if rr.Header().Name == owner {
		return rr
	}
	switch rr := rr.(type) {
	case *dns.A:
		o.a = append(o.a, *rr)
		c := &o.a[len(o.a)-1]
		c.Hdr.Name = owner
		return c
	case *dns.AAAA:
		o.aaaa = append(o.aaaa, *rr)
		c := &o.aaaa[len(o.aaaa)-1]
		c.Hdr.Name = owner
		return c
	case *dns.SRV:
		return o.srv(rr, owner)
	}
	c := dns.Copy(rr)
	c.Header().Name = owner
	return c
}

// srv returns a copy of rr under owner, for the caller to change further.
func (o *ownedRRs) srv(rr *dns.SRV, owner string) *dns.SRV {
	o.srvs = append(o.srvs, *rr)
	c := &o.srvs[len(o.srvs)-1]
	c.Hdr.Name = owner
	return c
}
