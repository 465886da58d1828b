package zone

import (
	"cmp"
	"slices"
	"sync"
)

// Sink receives what a source sees. Its methods record and return: they
// never build, so informer handlers may call them. Any goroutine may call
// them; one source's calls must come in the order it saw the changes.
type Sink interface {
	// Apply records objects upserted or deleted, in order.
	Apply(changes ...Change)
	// Replace records the source's complete view: it holds exactly these
	// objects, and those it held before and not now are deleted. The first
	// Replace says the source has synced, and nothing is built before it;
	// a later one is a relist, after which Apply continues from the new view.
	// Nodes are not part of it: a source hands them by Apply only, and
	// after a relist it deletes those gone meanwhile.
	Replace(services []*Service, slices []*EndpointSlice)
}

// ObjectKind names the kind of object a Change is about.
type ObjectKind uint8

const (
	ObjectService ObjectKind = iota + 1
	ObjectEndpointSlice
	// ObjectNode: Nodes build no records, and the Publisher's store
	// ignores them; they are for the Sinks in front of it.
	ObjectNode
)

func (k ObjectKind) String() string {
	switch k {
	case ObjectService:
		return "service"
	case ObjectEndpointSlice:
		return "endpointslice"
	case ObjectNode:
		return "node"
	}
	return "unknown"
}

// Op says what happened to an object.
type Op uint8

const (
	// OpUpsert: the object was created or changed; the Change carries it
	// whole.
	OpUpsert Op = iota + 1
	// OpDelete: the object is gone; only its namespace and name count.
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpUpsert:
		return "upsert"
	case OpDelete:
		return "delete"
	}
	return "unknown"
}

// Change is one object a source saw upserted or deleted. Exactly the field
// of its Kind is set; a delete's object needs only Namespace and Name.
type Change struct {
	Op      Op
	Kind    ObjectKind
	Service *Service
	Slice   *EndpointSlice
	Node    *ClusterNode
}

// ServiceChange returns the Change of op on s.
func ServiceChange(op Op, s *Service) Change {
	return Change{Op: op, Kind: ObjectService, Service: s}
}

// SliceChange returns the Change of op on s.
func SliceChange(op Op, s *EndpointSlice) Change {
	return Change{Op: op, Kind: ObjectEndpointSlice, Slice: s}
}

// NodeChange returns the Change of op on n.
func NodeChange(op Op, n *ClusterNode) Change {
	return Change{Op: op, Kind: ObjectNode, Node: n}
}

// ObjectKey names an object within its kind.
type ObjectKey struct {
	Kind            ObjectKind
	Namespace, Name string
}

// Key names the object the Change is about.
func (c Change) Key() ObjectKey {
	switch c.Kind {
	case ObjectService:
		return ObjectKey{Kind: c.Kind, Namespace: c.Service.Namespace, Name: c.Service.Name}
	case ObjectEndpointSlice:
		return ObjectKey{Kind: c.Kind, Namespace: c.Slice.Namespace, Name: c.Slice.Name}
	case ObjectNode:
		return ObjectKey{Kind: c.Kind, Name: c.Node.Name}
	}
	return ObjectKey{Kind: c.Kind}
}

// Equivalent reports whether c and d, upserts of one key, carry objects
// that give the same records (ServicesEquivalent, SlicesEquivalent).
func (c Change) Equivalent(d Change) bool {
	switch {
	case c.Kind != d.Kind:
		return false
	case c.Kind == ObjectService:
		return ServicesEquivalent(c.Service, d.Service)
	case c.Kind == ObjectEndpointSlice:
		return SlicesEquivalent(c.Slice, d.Slice)
	case c.Kind == ObjectNode:
		return NodesEquivalent(c.Node, d.Node)
	}
	return false
}

// store holds the objects the zone is built from, as the sources' changes
// left them, and the keys changed since the last build took them. Sources
// write it through Sink; the Publisher's Run goroutine reads it. The lock
// is held for map updates and the copy of a build's lists, never for a build.
type store struct {
	mu       sync.Mutex
	services map[ObjectKey]*Service
	slices   map[ObjectKey]*EndpointSlice
	// slicesOf indexes slices by the Service they name.
	slicesOf map[serviceKey]map[string]*EndpointSlice
	batch    map[ObjectKey]Op // last op per key since the last take
	// touched are the Services whose records the batch may change: those
	// it changed, and those whose slices it changed, before and after (a
	// slice may move from one Service to another).
	touched  map[serviceKey]bool
	synced   bool
	replaced bool // a replace since the last take
}

func newStore() *store {
	return &store{
		services: make(map[ObjectKey]*Service),
		slices:   make(map[ObjectKey]*EndpointSlice),
		slicesOf: make(map[serviceKey]map[string]*EndpointSlice),
		batch:    make(map[ObjectKey]Op),
		touched:  make(map[serviceKey]bool),
	}
}

// record records changes.
func (s *store) record(changes []Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply(changes)
}

// apply records changes; the caller holds mu.
func (s *store) apply(changes []Change) {
	for _, c := range changes {
		k := c.Key()
		switch {
		case c.Op == OpDelete && c.Kind == ObjectService:
			delete(s.services, k)
		case c.Op == OpDelete && c.Kind == ObjectEndpointSlice:
			s.unindex(k)
			delete(s.slices, k)
		case c.Kind == ObjectService:
			s.services[k] = c.Service
		case c.Kind == ObjectEndpointSlice:
			s.unindex(k)
			s.slices[k] = c.Slice
			owner := sliceOwner(c.Slice)
			if s.slicesOf[owner] == nil {
				s.slicesOf[owner] = make(map[string]*EndpointSlice)
			}
			s.slicesOf[owner][k.Name] = c.Slice
			s.touched[owner] = true
		default:
			continue
		}
		if c.Kind == ObjectService {
			s.touched[serviceKey{k.Namespace, k.Name}] = true
		}
		s.batch[k] = c.Op
	}
}

// unindex takes the slice of key k, if any, out of its Service's index,
// which the batch then touches.
func (s *store) unindex(k ObjectKey) {
	old := s.slices[k]
	if old == nil {
		return
	}
	owner := sliceOwner(old)
	delete(s.slicesOf[owner], k.Name)
	if len(s.slicesOf[owner]) == 0 {
		delete(s.slicesOf, owner)
	}
	s.touched[owner] = true
}

// replace makes the store hold exactly these objects, recording as changed
// only the keys whose object is new, gone or not equivalent. It keeps the
// new objects of the others too: the source's cache holds those, and the
// old ones would be a second copy. The next build, which a replace always
// asks for, lets the old ones go.
func (s *store) replace(services []*Service, slices []*EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var changes []Change
	keep := make(map[ObjectKey]bool, len(services)+len(slices))
	for _, svc := range services {
		c := ServiceChange(OpUpsert, svc)
		k := c.Key()
		keep[k] = true
		if old, ok := s.services[k]; !ok || !ServicesEquivalent(old, svc) {
			changes = append(changes, c)
		}
		s.services[k] = svc
	}
	for _, sl := range slices {
		c := SliceChange(OpUpsert, sl)
		k := c.Key()
		keep[k] = true
		if old, ok := s.slices[k]; !ok || !SlicesEquivalent(old, sl) {
			changes = append(changes, c)
		}
		s.slices[k] = sl
	}
	for k, svc := range s.services {
		if !keep[k] {
			changes = append(changes, ServiceChange(OpDelete, svc))
		}
	}
	for k, sl := range s.slices {
		if !keep[k] {
			changes = append(changes, SliceChange(OpDelete, sl))
		}
	}
	s.apply(changes)
	s.synced, s.replaced = true, true
}

// view is what one build reads: the keys changed since the previous
// view, and the objects it needs.
type view struct {
	batch map[ObjectKey]Op
	// replaced: the source replaced its whole view since the previous
	// one, even if with equivalent objects.
	replaced bool
	// touched are the Services the batch touched, as they are now.
	touched map[serviceKey]touchedService
	// changed are the slices the batch upserted, as they are now.
	changed []*EndpointSlice
}

// take returns the changes since the last take and starts a new batch; ok
// is false before the first Replace, and the batch then stays.
func (s *store) take() (v view, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.synced {
		return view{}, false
	}
	v.batch, v.replaced = s.batch, s.replaced
	v.touched = make(map[serviceKey]touchedService, len(s.touched))
	for k := range s.touched {
		if s.replaced {
			break // a full build follows
		}
		t := touchedService{svc: s.services[ObjectKey{Kind: ObjectService, Namespace: k.Namespace, Name: k.Name}]}
		for _, sl := range s.slicesOf[k] {
			t.slices = append(t.slices, sl)
		}
		v.touched[k] = t
	}
	for k, op := range v.batch {
		if k.Kind == ObjectEndpointSlice && op == OpUpsert {
			v.changed = append(v.changed, s.slices[k])
		}
	}
	s.batch, s.touched, s.replaced = make(map[ObjectKey]Op), make(map[serviceKey]bool), false
	return v, true
}

// all returns every object: Services in a stable order, so that a build
// does not depend on map order.
func (s *store) all() ([]*Service, []*EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	services := make([]*Service, 0, len(s.services))
	for _, svc := range s.services {
		services = append(services, svc)
	}
	slices.SortFunc(services, func(a, b *Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	all := make([]*EndpointSlice, 0, len(s.slices))
	for _, sl := range s.slices {
		all = append(all, sl)
	}
	return services, all
}
