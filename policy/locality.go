package policy

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

func init() {
	Register(localityBuilder{name: "prefer-zone"})
	Register(localityBuilder{name: "prefer-node", node: true})
}

// Place is an interned node or zone name: equal names have equal Places,
// so that steps compare them as integers. NoPlace is the empty name.
type Place uint32

// NoPlace is the Place of an unknown node or zone.
const NoPlace Place = 0

// PlaceOf is the Place of name, NoPlace when no endpoint was ever bound
// there (no candidate can then share it). It takes no lock and allocates
// nothing.
func PlaceOf(name string) Place {
	if name == "" {
		return NoPlace
	}
	return (*places.names.Load())[name]
}

// places interns every node and zone name Bind has seen. Names are few
// (one per node and zone of the cluster) and kept for the process's life;
// the table is copied on each new name, so that PlaceOf reads it without
// a lock.
var places = newPlaceTable()

type placeTable struct {
	mu    sync.Mutex
	names atomic.Pointer[map[string]Place]
}

func newPlaceTable() *placeTable {
	t := &placeTable{}
	t.names.Store(&map[string]Place{})
	return t
}

func (t *placeTable) intern(name string) Place {
	if name == "" {
		return NoPlace
	}
	if p, ok := (*t.names.Load())[name]; ok {
		return p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.names.Load()
	if p, ok := old[name]; ok {
		return p
	}
	next := make(map[string]Place, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	p := Place(len(old) + 1)
	next[strings.Clone(name)] = p
	t.names.Store(&next)
	return p
}

// The traffic distributions of a Service's spec.trafficDistribution that
// select a locality step.
const (
	TrafficPreferSameZone = "PreferSameZone"
	TrafficPreferClose    = "PreferClose" // the older spelling of PreferSameZone
	TrafficPreferSameNode = "PreferSameNode"
)

// withLocality adds the locality step a trafficDistribution asks for at
// the front of spec, unless spec already has one: the step keeps the
// local candidates and the rest of the chain orders and subsets them.
func withLocality(spec, distribution string) string {
	var step string
	switch distribution {
	case TrafficPreferSameZone, TrafficPreferClose:
		step = "prefer-zone"
	case TrafficPreferSameNode:
		step = "prefer-node"
	default:
		return spec
	}
	for _, p := range strings.Split(spec, ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(p), "=")
		if name == "prefer-zone" || name == "prefer-node" {
			return spec
		}
	}
	return step + ", " + spec
}

// Defaults of the locality steps' arguments.
const (
	// defaultLocalMin: one ready local endpoint suffices.
	defaultLocalMin = 1
	// defaultLocalOver: the local endpoints may carry up to twice the
	// load score of the others before the answer spills over.
	defaultLocalOver = 1.0
)

type localityBuilder struct {
	name string
	node bool
}

func (b localityBuilder) Name() string { return b.name }

// Traits: the step keeps candidates in their order (no Reorders), its
// answer depends on where the asker is (not on its address: no
// ReadsClient, so that a reply's ECS scope is the prefix that located
// the asker), and it reads load for spill-over.
func (b localityBuilder) Traits() Traits { return ReadsLocation | ReadsLoad }

// Build reads "min:N over:F by:hints" (any of them, space-separated):
// N ≥ 1 ready local endpoints are needed, F ≥ 0 is how far the local
// endpoints' mean load score may exceed the others' (as a fraction of it)
// before the answer spills over, and by:hints follows EndpointSlice hints
// only, never the endpoints' own node and zone.
func (b localityBuilder) Build(args string) (Step, error) {
	l := &locality{node: b.node, min: defaultLocalMin, over: defaultLocalOver}
	for _, f := range strings.Fields(args) {
		key, val, _ := strings.Cut(f, ":")
		var err error
		switch key {
		case "min":
			l.min, err = strconv.Atoi(val)
			if err == nil && l.min < 1 {
				err = fmt.Errorf("below 1")
			}
		case "over":
			l.over, err = strconv.ParseFloat(val, 64)
			if err == nil && !(l.over >= 0) {
				err = fmt.Errorf("below 0")
			}
		case "by":
			l.byHints = val == "hints"
			if !l.byHints {
				err = fmt.Errorf("only by:hints")
			}
		default:
			err = fmt.Errorf("unknown argument")
		}
		if err != nil {
			return nil, fmt.Errorf("want %s[=min:N over:F by:hints] with N ≥ 1 and F ≥ 0, got %q: %w", b.name, f, err)
		}
	}
	return l, nil
}

// locality keeps the candidates local to the client, in their order,
// when they can serve it, so that the steps after it order and subset
// only those: "prefer-zone, least-loaded, first=1" answers the least
// loaded endpoint of the client's zone. prefer-zone keeps the candidates
// in the client's zone; prefer-node those on the client's node, else
// those in its zone. Where every ready candidate has EndpointSlice hints
// for the level (forNodes for the node, forZones for the zone), the local
// candidates are those whose hints name the client's node or zone
// instead (see levelOf); with by:hints, a level whose hints are missing
// or incomplete keeps no local candidates, as kube-proxy ignores them.
//
// A set of local candidates serves when it has at least min ready ones
// and their mean load score (BlendedScores over all the candidates, as
// least-loaded scores them) is at most (1+over) times the others' mean.
// Otherwise the answer spills over: every candidate is kept, and the next
// steps choose across zones. A client of unknown place, or whose place
// has no candidate, gets every candidate, as without the step.
type locality struct {
	node    bool
	byHints bool
	min     int
	over    float64
}

func (l *locality) Pick(req *Request, cands []Endpoint, in, out []int) []int {
	lv, why := l.decide(req, cands, in)
	if why != served {
		return append(out, in...)
	}
	for _, i := range in {
		if lv.local(&cands[i]) {
			out = append(out, i)
		}
	}
	return out
}

// spill is why the candidates of a place cannot take an answer alone.
type spill uint8

const (
	served      spill = iota // they can
	unplaced                 // the client's place is unknown, or no endpoint was ever there (NoPlace)
	unhinted                 // by:hints, and the candidates' hints are missing or incomplete
	noneLocal                // no candidate is there
	tooFewReady              // fewer than min of them are ready
	overloaded               // their load exceeds the others' by more than over
)

// decide returns the level whose local candidates the step keeps, or,
// when it keeps them all, why the client's place could not serve alone
// (anything but served).
func (l *locality) decide(req *Request, cands []Endpoint, in []int) (level, spill) {
	why := unplaced
	if l.node && req.Node != NoPlace {
		lv, ok := l.levelOf(cands, in, req.Node, true)
		if why = unhinted; ok {
			if why = l.serves(cands, in, &lv); why == served {
				return lv, served
			}
		}
	}
	if req.Zone != NoPlace {
		// A zone that spills says why, over its node.
		lv, ok := l.levelOf(cands, in, req.Zone, false)
		if why = unhinted; ok {
			if why = l.serves(cands, in, &lv); why == served {
				return lv, served
			}
		}
	}
	return level{}, why
}

// serves reports whether the candidates local at lv can take the answer
// alone, or why not: enough of them are ready and they are not
// overloaded.
func (l *locality) serves(cands []Endpoint, in []int, lv *level) spill {
	local, ready, others := 0, 0, 0
	for _, i := range in {
		switch {
		case !lv.local(&cands[i]):
			others++
		case cands[i].Ready:
			local, ready = local+1, ready+1
		default:
			local++
		}
	}
	switch {
	case local == 0:
		return noneLocal
	case ready < l.min:
		return tooFewReady
	case others > 0 && l.overloaded(cands, in, lv):
		return overloaded
	}
	return served
}

// overloaded reports whether the mean load score of the candidates local
// at lv exceeds (1+over) times the others'.
func (l *locality) overloaded(cands []Endpoint, in []int, lv *level) bool {
	var buf [64]float64
	scores := BlendedScores(cands, in, nowTicks(), wallNow(cands, in), nil, buf[:0])
	var localSum, otherSum float64
	var nLocal, nOther int
	for j, i := range in {
		if lv.local(&cands[i]) {
			localSum, nLocal = localSum+scores[j], nLocal+1
		} else {
			otherSum, nOther = otherSum+scores[j], nOther+1
		}
	}
	return localSum/float64(nLocal) > (1+l.over)*otherSum/float64(nOther)
}

// The notes a locality step's trace carries (StepTrace.Note): what it
// kept, or why it kept every candidate. Notes that start with
// NoteSpillOver name a spill-over.
const (
	NoteKeptNode    = "same-node: the client's node serves"
	NoteKeptZone    = "same-zone: the client's zone serves"
	NoteUnplaced    = "client unknown, or its node and zone never had an endpoint: every candidate"
	NoteNoneLocal   = "no candidate on the client's node or in its zone: every candidate"
	NoteUnhinted    = "by:hints, and hints are missing or incomplete: every candidate"
	NoteSpillOver   = "spill-over: "
	NoteTooFewReady = NoteSpillOver + "fewer local endpoints ready than min"
	NoteOverloaded  = NoteSpillOver + "local load above threshold"
)

// note says, for a trace, what the step made of the question.
func (l *locality) note(req *Request, cands []Endpoint, in []int) string {
	lv, why := l.decide(req, cands, in)
	switch {
	case why == served && lv.node:
		return NoteKeptNode
	case why == served:
		return NoteKeptZone
	case why == unhinted:
		return NoteUnhinted
	case why == noneLocal:
		return NoteNoneLocal
	case why == tooFewReady:
		return NoteTooFewReady
	case why == overloaded:
		return NoteOverloaded
	}
	return NoteUnplaced
}
