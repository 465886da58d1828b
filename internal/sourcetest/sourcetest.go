// Package sourcetest is a zone.Sink for the tests of the zone's sources:
// it keeps what a source handed it and counts the calls. It is not a _test
// file so that every source's tests can import it, but it is test-only: no
// production package may import it. It imports only zone and the standard
// library.
package sourcetest

import (
	"cmp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hdns-dev/hdns/zone"
)

// Sink records a source's view. The zero value is ready to use.
type Sink struct {
	mu       sync.Mutex
	services map[zone.ObjectKey]*zone.Service
	slices   map[zone.ObjectKey]*zone.EndpointSlice
	nodes    map[string]*zone.ClusterNode
	synced   bool
	calls    int
	changes  []zone.Change
}

var _ zone.Sink = (*Sink)(nil)

// Apply implements zone.Sink.
func (s *Sink) Apply(changes ...zone.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.calls++
	s.changes = append(s.changes, changes...)
	for _, c := range changes {
		switch {
		case c.Kind == zone.ObjectService && c.Op == zone.OpDelete:
			delete(s.services, c.Key())
		case c.Kind == zone.ObjectService:
			s.services[c.Key()] = c.Service
		case c.Kind == zone.ObjectEndpointSlice && c.Op == zone.OpDelete:
			delete(s.slices, c.Key())
		case c.Kind == zone.ObjectEndpointSlice:
			s.slices[c.Key()] = c.Slice
		case c.Kind == zone.ObjectNode && c.Op == zone.OpDelete:
			delete(s.nodes, c.Node.Name)
		case c.Kind == zone.ObjectNode:
			s.nodes[c.Node.Name] = c.Node
		}
	}
}

// Replace implements zone.Sink.
func (s *Sink) Replace(services []*zone.Service, slices []*zone.EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services, s.slices = nil, nil
	s.init()
	s.calls++
	s.synced = true
	for _, svc := range services {
		s.services[zone.ServiceChange(zone.OpUpsert, svc).Key()] = svc
	}
	for _, sl := range slices {
		s.slices[zone.SliceChange(zone.OpUpsert, sl).Key()] = sl
	}
}

func (s *Sink) init() {
	if s.services == nil {
		s.services = make(map[zone.ObjectKey]*zone.Service)
		s.slices = make(map[zone.ObjectKey]*zone.EndpointSlice)
	}
	if s.nodes == nil {
		s.nodes = make(map[string]*zone.ClusterNode)
	}
}

// List returns the objects held, by namespace and name, and whether the
// source has synced (called Replace).
func (s *Sink) List() ([]*zone.Service, []*zone.EndpointSlice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var svcs []*zone.Service
	for _, svc := range s.services {
		svcs = append(svcs, svc)
	}
	slices.SortFunc(svcs, func(a, b *zone.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var sls []*zone.EndpointSlice
	for _, sl := range s.slices {
		sls = append(sls, sl)
	}
	slices.SortFunc(sls, func(a, b *zone.EndpointSlice) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return svcs, sls, s.synced
}

// Nodes returns the Nodes held, by name. Replace does not carry Nodes,
// so they stay across it.
func (s *Sink) Nodes() []*zone.ClusterNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*zone.ClusterNode
	for _, n := range s.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *zone.ClusterNode) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Calls counts the calls of Apply and Replace.
func (s *Sink) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Changes returns every Change Apply was given, in order.
func (s *Sink) Changes() []zone.Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.changes)
}

// WaitFor fails the test unless cond holds within 5s.
func WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
