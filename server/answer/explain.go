package answer

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server/wire"
	"github.com/hdns-dev/hdns/zone"
)

// Explanation shows how hdns answers one question for one client: the
// candidates with their conditions and load, each policy step's input and
// output (indices into the candidates), and the final answer.
type Explanation struct {
	Name        string             `json:"name"`
	Type        string             `json:"type"`
	Client      string             `json:"client"`
	Rcode       string             `json:"rcode"`
	Service     string             `json:"service,omitempty"`
	Policy      string             `json:"policy,omitempty"`
	PolicyError string             `json:"policyError,omitempty"`
	TTL         uint32             `json:"ttl,omitempty"`
	Candidates  []ExplainCandidate `json:"candidates,omitempty"`
	Steps       []policy.StepTrace `json:"steps,omitempty"`
	Answer      []string           `json:"answer"`
	Authority   []string           `json:"authority,omitempty"`
	Additional  []string           `json:"additional,omitempty"`

	// ClientLocation is where the client is, when the explainer was
	// given a locator.
	ClientLocation *ExplainLocation `json:"clientLocation,omitempty"`
	// ClientPrefix is how many leading bits of the client's address the
	// answer depends on: the EDNS Client Subnet scope of the reply to a
	// query whose source prefix is at least as long (0: every client
	// gets this answer; the address's length: only this address).
	ClientPrefix int `json:"clientPrefix"`
}

// ExplainLocation is the node, zone and region a client was found on,
// and how: "node-address", "pod-cidr", "endpoint" or "unknown" (then the
// rest is empty).
type ExplainLocation struct {
	Node   string `json:"node,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Region string `json:"region,omitempty"`
	By     string `json:"by"`
}

// ExplainCandidate is one endpoint a policy chose among.
type ExplainCandidate struct {
	Index       int     `json:"index"`
	Key         string  `json:"key"`
	Hostname    string  `json:"hostname"`
	Pod         string  `json:"pod,omitempty"`
	Node        string  `json:"node,omitempty"`
	Zone        string  `json:"zone,omitempty"`
	Ready       bool    `json:"ready"`
	Serving     bool    `json:"serving"`
	Terminating bool    `json:"terminating"`
	Weight      float64 `json:"weight"`
	// Load is the handout ledger entry.
	Load float64 `json:"load"`
	// Live is the endpoint's last polled live load and LiveAge its age in
	// seconds; both absent when the endpoint has no value. LiveFresh says
	// whether least-loaded uses it (it is younger than the staleness
	// bound).
	Live      *float64 `json:"live,omitempty"`
	LiveAge   *float64 `json:"liveAgeSeconds,omitempty"`
	LiveFresh bool     `json:"liveFresh,omitempty"`
	// Share is the endpoint's least-loaded share weight (1: an equal
	// share), learnt from the live values polled so far; absent without
	// live load.
	Share *float64 `json:"share,omitempty"`
	// Clients is how many clients hold the endpoint: their latest answer
	// from a least-loaded Service put it first and has not expired
	// (policy.Ledger.Clients).
	Clients int `json:"clients"`
	// Score is what least-loaded compares: the ledger blended with fresh
	// live load, normalised over the question's candidates (policy.BlendedScores),
	// as for an asker that holds none of them.
	Score   float64  `json:"score"`
	Records []string `json:"records"`
	// Placed says why the candidate is in the answer or left out: where
	// it runs seen from the client ("same-node", "same-zone", "other
	// zone", "unknown client") for a policy that reads the client's
	// place, or "answered"; a spill-over's reason (a locality step's
	// policy.NoteSpillOver note) for an answered candidate of another
	// zone, or the hints that kept it ("other zone, hinted for the
	// client's zone"); for one left out, the step that left it out and
	// why, when that is the candidate's readiness, place or hints
	// ("filtered by drain: not ready", "filtered by prefer-zone: other
	// zone", "filtered by prefer-zone: hinted for another zone", "not
	// chosen by first=1").
	Placed string `json:"placed,omitempty"`
}

func (e *Explanation) choice(c *zone.Choice) {
	set := c.Set
	e.Service = set.Namespace + "/" + set.Service
	e.Policy = set.Policy.String()
	e.TTL = set.TTL
	if set.PolicyErr != nil {
		e.PolicyError = set.PolicyErr.Error()
	}
	e.Candidates = e.Candidates[:0]
	now := time.Now()
	scores := policy.BlendedScores(set.Candidates, c.In, policy.NowTicks(), now, nil, nil)
	var rrs zone.RRBuf
	for k, i := range c.In {
		ep, src := &set.Candidates[i], set.Endpoint(i)
		e.Candidates = append(e.Candidates, ExplainCandidate{
			Index: i, Key: ep.Key, Hostname: set.Hostname(i), Pod: src.PodName(),
			Ready: ep.Ready, Serving: ep.Serving, Terminating: ep.Terminating, Weight: float64(ep.Weight), Load: ep.LedgerValue(),
			Score: scores[k], Clients: ep.Ledger.Clients(), Records: rrStrings(c.AppendRRs(nil, i, &rrs)),
		})
		if t := src.Topology; t != nil {
			ec := &e.Candidates[len(e.Candidates)-1]
			ec.Node, ec.Zone = t.NodeName, t.Zone
		}
		if s := ep.Live.Sample(); s != nil && !s.Missing {
			ec := &e.Candidates[len(e.Candidates)-1]
			v, age := s.Value, now.Sub(s.At).Seconds()
			share := ep.Live.Weight()
			ec.Live, ec.LiveAge, ec.LiveFresh, ec.Share = &v, &age, s.Fresh(now), &share
		}
	}
}

// placedAs names, in explanations, where a candidate runs seen from a
// client a policy located.
var placedAs = [numLocalities]string{unknownClient: "unknown client", sameNode: "same-node", sameZone: "same-zone", otherZone: "other zone"}

// keptLevel names the level a locality step kept, by its locality.
var keptLevel = [numLocalities]string{sameNode: "node", sameZone: "zone"}

// place fills in why each candidate is placed as it is in the answer
// picked (indices into c's candidates): from where it runs seen from the
// client, when the plan p located it, and from the steps' traces.
func (e *Explanation) place(c *zone.Choice, picked []int, p *plan) {
	n := len(c.Set.Candidates)
	answered := make([]bool, n)
	for _, i := range picked {
		answered[i] = true
	}
	droppedBy := e.droppedBy(n)
	spillNote, kept := "", numLocalities
	for _, st := range e.Steps {
		switch {
		case strings.HasPrefix(st.Note, policy.NoteSpillOver):
			spillNote = st.Note
		case st.Note == policy.NoteKeptNode:
			kept = sameNode
		case st.Note == policy.NoteKeptZone:
			kept = sameZone
		}
	}
	for k := range e.Candidates {
		ec := &e.Candidates[k]
		ep := &c.Set.Candidates[ec.Index]
		where := p.client.locality(ep)
		switch {
		case !answered[ec.Index] && droppedBy[ec.Index] >= 0:
			ec.Placed = leftOut(&e.Steps[droppedBy[ec.Index]], ep, where, p.located)
		case !answered[ec.Index]:
			ec.Placed = "not chosen"
		case !p.located:
			ec.Placed = "answered"
		case where == otherZone && spillNote != "":
			ec.Placed = spillNote
		case kept != numLocalities && where > kept:
			// Kept at a level farther than where it runs: by its hints.
			ec.Placed = placedAs[where] + ", hinted for the client's " + keptLevel[kept]
		default:
			ec.Placed = placedAs[where]
		}
	}
}

// droppedBy returns, for each of n candidates, the index of the first
// step whose input holds it and whose output does not; -1 for none.
func (e *Explanation) droppedBy(n int) []int {
	by := make([]int, n)
	for i := range by {
		by[i] = -1
	}
	out := make([]bool, n)
	for s, st := range e.Steps {
		clear(out)
		for _, i := range st.Output {
			out[i] = true
		}
		for _, i := range st.Input {
			if !out[i] && by[i] < 0 {
				by[i] = s
			}
		}
	}
	return by
}

// leftOut says why step st left out the candidate ep, which runs at
// where seen from the client (when located): its readiness, or its place
// when the step noted what it made of the client's place, else only the
// step.
func leftOut(st *policy.StepTrace, ep *policy.Endpoint, where locality, located bool) string {
	byPlace := located && st.Note != ""
	switch {
	case !ep.Ready:
		return "filtered by " + st.Step + ": not ready"
	case byPlace && where == otherZone:
		return "filtered by " + st.Step + ": other zone"
	case byPlace && where == sameZone && st.Note == policy.NoteKeptNode:
		return "filtered by " + st.Step + ": other node"
	case byPlace && where != unknownClient && st.Note == policy.NoteKeptNode:
		return "filtered by " + st.Step + ": hinted for another node"
	case byPlace && where != unknownClient && st.Note == policy.NoteKeptZone:
		return "filtered by " + st.Step + ": hinted for another zone"
	}
	return "not chosen by " + st.Step
}

func rrStrings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
		}
	}
	return out
}

// Explain answers the question as a query from client would be answered,
// without counting it as a handout, and says how the answer was chosen.
func (r *Responder) Explain(name string, qtype uint16, client netip.Addr) (*Explanation, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(wire.MaxUDPSize, false)
	pkt, err := q.Pack()
	if err != nil {
		return nil, err
	}
	e := &Explanation{Name: q.Question[0].Name, Type: dns.TypeToString[qtype], Client: client.String()}
	s := &Scratch{explain: e}
	uncounted := *r
	uncounted.Metrics = nil
	out, _ := uncounted.Respond(pkt, client, true, s)
	e.ClientPrefix = int(min(s.plan.scope, uint8(client.BitLen())))
	var reply dns.Msg
	if err := reply.Unpack(out); err != nil {
		return nil, err
	}
	e.Rcode = dns.RcodeToString[reply.Rcode]
	e.Answer = rrStrings(reply.Answer)
	e.Authority = rrStrings(reply.Ns)
	e.Additional = rrStrings(reply.Extra)
	return e, nil
}
