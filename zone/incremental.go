package zone

import (
	"cmp"
	"slices"
)

// zoneState is what a Snapshot was built from, kept by the Publisher so
// that the next Snapshot rebuilds only the Services a batch of changes
// touches (update) and shares everything else with the previous one: the
// shards of the other Services, the untouched parts of the name table and
// of the PTR index. Only the Publisher's Run goroutine uses it.
type zoneState struct {
	opts   *Options
	shards map[serviceKey]*shard
	// above counts, for each empty non-terminal above Services' names,
	// the shards that make it exist.
	above map[string]*aboveName
	names *nameTable
	ptrs  ptrIndex
	// endpoints and ownNames are the sums of the shards'.
	endpoints, ownNames int
	errs                map[serviceKey]error
	errList             []PolicyError // errs in Service order; nil when it must be made again
	// odd counts the Services whose namespace or name is not a DNS label:
	// their names might be another's, so snapshots are built whole while
	// any is there.
	odd int
	// nested: the options' zones nest, or a reverse zone is one address's
	// name, so that names of different sources may coincide: every
	// snapshot is built whole.
	nested bool
	// scratch and buildNames are the builder's working space, kept from
	// one update to the next, so that an update does not allocate it
	// again.
	scratch    candidateScratch
	buildNames map[string]*Node
}

type aboveName struct {
	name string
	node *Node
	refs int
}

func newZoneState(opts *Options) *zoneState {
	return &zoneState{opts: opts, shards: make(map[serviceKey]*shard), above: make(map[string]*aboveName),
		errs: make(map[serviceKey]error), nested: zonesNest(opts)}
}

// zonesNest reports whether names of opts's zones may coincide across
// sources: a zone inside another, or a reverse zone that is one
// address's name (whose apex then holds PTR records).
func zonesNest(opts *Options) bool {
	all := append(slices.Clone(opts.Zones), opts.ReverseZones...)
	for i, z := range all {
		for j, y := range all {
			if i != j && InZone(z, y) {
				return true
			}
		}
	}
	for _, z := range opts.ReverseZones {
		if p, ok := parseReverse(z); ok && p.IsSingleIP() {
			return true
		}
	}
	return false
}

// incremental reports whether the next snapshot may be built from this
// state by update.
func (st *zoneState) incremental() bool { return !st.nested && st.odd == 0 }

// put makes sh the shard of Service k (svc), or removes k's shard when sh
// is nil, and returns the shard it replaces. With edits non-nil it
// records there the names that change: their new node, or nil for those
// that go.
func (st *zoneState) put(k serviceKey, sh *shard, svc *Service, edits map[string]*Node) *shard {
	old := st.shards[k]
	if old != nil {
		st.count(old, -1, edits)
		delete(st.shards, k)
		if !isLabel(k.Namespace) || !isLabel(k.Name) {
			st.odd--
		}
	}
	if sh != nil {
		st.shards[k] = sh
		st.count(sh, 1, edits)
		if !isLabel(svc.Namespace) || !isLabel(svc.Name) {
			st.odd++
		}
	}
	if old != nil && old.policyErr != nil || sh != nil && sh.policyErr != nil {
		delete(st.errs, k)
		if sh != nil && sh.policyErr != nil {
			st.errs[k] = sh.policyErr
		}
		st.errList = nil
	}
	return old
}

// count adds (sign 1) or takes away (sign -1) sh's counts, names and
// references to the names above it.
func (st *zoneState) count(sh *shard, sign int, edits map[string]*Node) {
	st.endpoints += sign * sh.endpoints
	st.ownNames += sign * sh.ownNames
	if edits != nil {
		for _, list := range [][]nameEntry{sh.nodes, sh.ents} {
			for _, e := range list {
				if sign > 0 {
					edits[e.name] = e.node
				} else {
					edits[e.name] = nil
				}
			}
		}
	}
	for _, e := range sh.above {
		a := st.above[e.name]
		if a == nil {
			a = &aboveName{name: e.name, node: e.node}
			st.above[e.name] = a
		}
		a.refs += sign
		switch {
		case a.refs == 0:
			delete(st.above, e.name)
			if edits != nil {
				edits[e.name] = nil
			}
		case a.refs == 1 && sign > 0 && edits != nil:
			edits[e.name] = a.node
		}
	}
}

// policyErrors lists the rejected policies in Service order.
func (st *zoneState) policyErrors() []PolicyError {
	if st.errList == nil && len(st.errs) > 0 {
		keys := make([]serviceKey, 0, len(st.errs))
		for k := range st.errs {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b serviceKey) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
		for _, k := range keys {
			st.errList = append(st.errList, PolicyError{Service: k.Namespace + "/" + k.Name, Err: st.errs[k]})
		}
	}
	return st.errList
}

// touchedService is a Service a batch touched, as it is now: svc is nil
// when it is gone; slices are the EndpointSlices that name it.
type touchedService struct {
	svc    *Service
	slices []*EndpointSlice
}

// update builds the Snapshot of serial that has the shards of touched
// rebuilt from their current objects and shares everything else with
// the state's last Snapshot; the state then describes the new one. The
// apexes, whose SOA holds the serial, are made again too.
func (st *zoneState) update(serial uint32, touched map[serviceKey]touchedService) *Snapshot {
	b := newBuilder(st.opts, serial)
	edits := b.staticNames()
	if st.buildNames != nil {
		b.scratch, b.names = st.scratch, st.buildNames
	}
	defer func() { st.scratch, st.buildNames = b.scratch, b.names }()
	var remove, add ptrLists
	for k, t := range touched {
		var sh *shard
		if t.svc != nil {
			sh = b.buildShard(t.svc, t.slices, st.shards[k])
		}
		old := st.put(k, sh, t.svc, edits)
		diffPTRs(&remove, &add, old, sh)
	}
	st.names = st.names.with(edits)
	st.ptrs.v4 = st.ptrs.v4.with(merged(remove.v4), merged(add.v4))
	st.ptrs.v6 = st.ptrs.v6.with(merged(remove.v6), merged(add.v6))
	snap := &Snapshot{Serial: serial, apexes: b.apexes, names: st.names, ptrs: st.ptrs}
	st.finish(snap)
	return snap
}

// ptrLists are the PTR records of some shards, one sorted list per shard
// and family.
type ptrLists struct {
	v4 [][]ptr4
	v6 [][]ptr6
}

func (x *ptrLists) add(recs ptrRecords) {
	if len(recs.v4) > 0 {
		x.v4 = append(x.v4, recs.v4)
	}
	if len(recs.v6) > 0 {
		x.v6 = append(x.v6, recs.v6)
	}
}

// diffPTRs adds to remove and add the PTR records that the index loses
// and gains when shard cur replaces old (either may be nil): the records
// of one that the other lacks. A change to a Service leaves most of its
// records as they were (those that do not name a member by its index),
// and so most of the index's chunks unedited.
func diffPTRs(remove, add *ptrLists, old, cur *shard) {
	var was, is ptrRecords
	if old != nil {
		was = old.ptrs
	}
	if cur != nil {
		is = cur.ptrs
	}
	var gone, came ptrRecords
	gone.v4, came.v4 = exclusive(was.v4, is.v4)
	gone.v6, came.v6 = exclusive(was.v6, is.v6)
	remove.add(gone)
	add.add(came)
}

// exclusive returns the records of a that b lacks and those of b that a
// lacks, each list sorted as the index is and without a record twice.
func exclusive[R ptrRecord[R]](a, b []R) (onlyA, onlyB []R) {
	if len(a) == 0 || len(b) == 0 {
		return a, b
	}
	for len(a) > 0 && len(b) > 0 {
		switch c := comparePTR(a[0], b[0]); {
		case a[0] == b[0]:
			a, b = a[1:], b[1:]
		case c < 0:
			onlyA, a = append(onlyA, a[0]), a[1:]
		case c > 0:
			onlyB, b = append(onlyB, b[0]), b[1:]
		default: // in the same place, of different builds
			onlyA, onlyB, a, b = append(onlyA, a[0]), append(onlyB, b[0]), a[1:], b[1:]
		}
	}
	return append(onlyA, a...), append(onlyB, b...)
}

// merged returns the records of lists, each sorted, in one sorted list:
// the one list itself when there is one (the usual change touches one
// Service), so that it is neither copied nor sorted again.
func merged[R ptrRecord[R]](lists [][]R) []R {
	if len(lists) <= 1 {
		if len(lists) == 0 {
			return nil
		}
		return lists[0]
	}
	var out []R
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.SortFunc(out, comparePTR[R])
	return out
}
