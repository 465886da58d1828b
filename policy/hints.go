package policy

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// HintSet is an interned set of EndpointSlice hints: the zones
// (hints.forZones) and nodes (hints.forNodes) whose clients an endpoint
// should serve. Endpoints with the same hints have the same HintSet, so
// that an endpoint carries 4 bytes for them. NoHints is the empty set.
type HintSet uint32

// NoHints is the HintSet of an endpoint without hints.
const NoHints HintSet = 0

// hints is what a HintSet stands for; never modified once interned.
type hints struct {
	zones, nodes []Place
}

// hintNames are the space-separated names a HintSet is interned by.
type hintNames struct{ zones, nodes string }

// hintSets interns every hint set Bind has seen. Sets are few (one per
// zone, or per node, for the EndpointSlice controller's) and, like the
// places they name, kept for the process's life. Steps read the table
// without a lock: it only grows, by appending to its slice and then
// publishing the longer slice.
var hintSets = newHintTable()

type hintTable struct {
	mu   sync.Mutex
	ids  map[hintNames]HintSet // under mu
	sets atomic.Pointer[[]hints]
}

func newHintTable() *hintTable {
	t := &hintTable{ids: make(map[hintNames]HintSet)}
	t.sets.Store(&[]hints{{}}) // NoHints
	return t
}

// load returns the table's sets, indexed by HintSet.
func (t *hintTable) load() []hints { return *t.sets.Load() }

// intern returns the HintSet of the space-separated names in zones and
// nodes, NoHints when both hold none. It interns each name as a Place, so
// that a client in a hinted zone without endpoints has a Place too.
func (t *hintTable) intern(zones, nodes string) HintSet {
	if strings.TrimSpace(zones) == "" && strings.TrimSpace(nodes) == "" {
		return NoHints
	}
	k := hintNames{zones, nodes}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[k]; ok {
		return id
	}
	sets := append(t.load(), hints{zones: internAll(zones), nodes: internAll(nodes)})
	id := HintSet(len(sets) - 1)
	t.ids[hintNames{strings.Clone(zones), strings.Clone(nodes)}] = id
	t.sets.Store(&sets)
	return id
}

// internAll interns the space-separated names, nil for none.
func internAll(names string) []Place {
	var out []Place
	for _, n := range strings.Fields(names) {
		if p := places.intern(n); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// HintedDistribution is the trafficDistribution that EndpointSlice hints
// stand for, as ServicePolicy.Hints takes it: PreferSameNode when
// anyNodes (some endpoint has forNodes), else PreferSameZone when
// anyZones, else "".
func HintedDistribution(anyZones, anyNodes bool) string {
	switch {
	case anyNodes:
		return TrafficPreferSameNode
	case anyZones:
		return TrafficPreferSameZone
	}
	return ""
}

// withHints adds the locality step that the trafficDistribution hints
// stand for, reading hints only, at the front of spec, unless spec already
// has a locality step (see withLocality).
func withHints(spec, distribution string) string {
	with := withLocality(spec, distribution)
	if with == spec {
		return spec
	}
	step, _, _ := strings.Cut(with, ",") // the step withLocality put first
	return step + "=by:hints" + with[len(step):]
}

// level is where a locality step looks for the candidates local to a
// client: those whose hints name the client's place, when every ready
// candidate has hints of the level (as kube-proxy reads them), else those
// at the client's place.
type level struct {
	sets   []hints
	place  Place
	node   bool // the node's level, else the zone's
	hinted bool
}

// levelOf returns the level of place, a node's when node is set, for the
// candidates in. ok is false when the step follows hints only (by:hints)
// and the candidates' hints of the level are missing or incomplete: the
// level then has no local candidates to keep.
func (l *locality) levelOf(cands []Endpoint, in []int, place Place, node bool) (lv level, ok bool) {
	lv = level{sets: hintSets.load(), place: place, node: node}
	ready := false
	for _, i := range in {
		e := &cands[i]
		if !e.Ready {
			continue
		}
		if len(lv.hints(e)) == 0 {
			return lv, !l.byHints
		}
		ready = true
	}
	lv.hinted = ready
	return lv, ready || !l.byHints
}

// hints returns e's hints of the level.
func (lv *level) hints(e *Endpoint) []Place {
	if lv.node {
		return lv.sets[e.Hints].nodes
	}
	return lv.sets[e.Hints].zones
}

// local reports whether e is local at the level.
func (lv *level) local(e *Endpoint) bool {
	switch {
	case lv.hinted:
		return slices.Contains(lv.hints(e), lv.place)
	case lv.node:
		return e.Node == lv.place
	}
	return e.Zone == lv.place
}
