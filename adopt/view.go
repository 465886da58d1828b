package adopt

import (
	"net/netip"
	"slices"
	"sync"

	"github.com/hdns-dev/hdns/zone"
)

// ServiceRef names a Service.
type ServiceRef struct{ Namespace, Name string }

// View is a zone.Sink that hands every call on to Next and keeps, on the
// side, what the server blocks are made of: the opted-in Services and the
// Service hdns is reached at. Changed tells its reader when that changed.
// It keeps pointers to the objects the source already holds, no copies.
// Create it with NewView.
type View struct {
	next     zone.Sink
	upstream ServiceRef

	mu            sync.Mutex
	opted         map[ServiceRef]*zone.Service
	upstreamAddrs []netip.AddrPort
	synced        bool
	changed       chan struct{} // holds one token while a change is unread
}

// NewView returns a View in front of next that also tracks the cluster
// IPs of the Service upstream (zero: none).
func NewView(next zone.Sink, upstream ServiceRef) *View {
	return &View{next: next, upstream: upstream, opted: make(map[ServiceRef]*zone.Service), changed: make(chan struct{}, 1)}
}

var _ zone.Sink = (*View)(nil)

// Apply implements zone.Sink: next records changes first.
func (v *View) Apply(changes ...zone.Change) {
	v.next.Apply(changes...)
	v.mu.Lock()
	defer v.mu.Unlock()
	moved := false
	for _, c := range changes {
		if c.Kind != zone.ObjectService {
			continue
		}
		s := c.Service
		if c.Op == zone.OpDelete {
			s = &zone.Service{Namespace: s.Namespace, Name: s.Name}
		}
		moved = v.record(s) || moved
	}
	if moved && v.synced {
		v.signal()
	}
}

// Replace implements zone.Sink: next records the view first.
func (v *View) Replace(services []*zone.Service, slices []*zone.EndpointSlice) {
	v.next.Replace(services, slices)
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.opted)
	v.upstreamAddrs = nil
	for _, s := range services {
		v.record(s)
	}
	v.synced = true
	v.signal()
}

// record takes s, whole or (no Kind, no Policy) deleted, into the view
// and reports whether what the blocks are made of moved. The caller holds
// mu.
func (v *View) record(s *zone.Service) bool {
	ref := ServiceRef{Namespace: s.Namespace, Name: s.Name}
	moved := false
	if ref == v.upstream {
		addrs := ServiceUpstreams(s)
		moved = !slices.Equal(addrs, v.upstreamAddrs)
		v.upstreamAddrs = addrs
	}
	_, was := v.opted[ref]
	if Opted(s) {
		v.opted[ref] = s
	} else {
		delete(v.opted, ref)
	}
	return moved || was != Opted(s)
}

func (v *View) signal() {
	select {
	case v.changed <- struct{}{}:
	default:
	}
}

// Changed receives a token after the source's first Replace, and after
// each later change of the opted-in set or of the upstream Service's
// addresses; changes that come before the token is read share it.
func (v *View) Changed() <-chan struct{} { return v.changed }

// State returns the opted-in Services, in no order, the upstream
// Service's addresses (nil when it is unknown or has no cluster IP), and
// whether the source has synced.
func (v *View) State() (opted []*zone.Service, upstream []netip.AddrPort, synced bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	opted = make([]*zone.Service, 0, len(v.opted))
	for _, s := range v.opted {
		opted = append(opted, s)
	}
	return opted, v.upstreamAddrs, v.synced
}
