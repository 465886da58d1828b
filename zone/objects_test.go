package zone

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
)

func TestServicesEquivalent(t *testing.T) {
	base := func() *corev1.Service {
		return fixture.Service{Namespace: "n", Name: "web", ClusterIPs: []string{"10.96.0.1"},
			Ports: []fixture.Port{{Name: "http", Port: 80}}}.API()
	}
	for _, tc := range []struct {
		name string
		edit func(*corev1.Service)
		same bool // equivalent after the edit
	}{
		{name: "resourceVersion", edit: func(s *corev1.Service) { s.ResourceVersion = "7" }, same: true},
		{name: "labels", edit: func(s *corev1.Service) { s.Labels = map[string]string{"a": "b"} }, same: true},
		{name: "other annotation", edit: func(s *corev1.Service) { s.Annotations = map[string]string{"x": "y"} }, same: true},
		{name: "selector", edit: func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "x"} }, same: true},
		{name: "port", edit: func(s *corev1.Service) { s.Spec.Ports[0].Port = 81 }},
		{name: "trafficDistribution", edit: func(s *corev1.Service) {
			s.Spec.TrafficDistribution = new(corev1.ServiceTrafficDistributionPreferSameZone)
		}},
		{name: "cluster IP", edit: func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.2"} }},
		{name: "policy", edit: func(s *corev1.Service) { s.Annotations = policyAnnotation("random") }},
		{name: "affinity", edit: func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }},
	} {
		edited := base()
		tc.edit(edited)
		if got := ServicesEquivalent(ServiceFromAPI(base()), ServiceFromAPI(edited)); got != tc.same {
			t.Errorf("%s: equivalent %v, want %v", tc.name, got, tc.same)
		}
	}
}

func TestSlicesEquivalent(t *testing.T) {
	base := func() *discoveryv1.EndpointSlice {
		return fixture.EndpointSlice{Namespace: "n", Name: "web-1", Service: "web",
			Ports:     []fixture.Port{{Name: "http", Port: 80}},
			Endpoints: []fixture.Endpoint{{Address: "10.0.0.1", Pod: "web-0", NodeName: "n1", Zone: "a"}}}.API()
	}
	for _, tc := range []struct {
		name string
		edit func(*discoveryv1.EndpointSlice)
		same bool
	}{
		{name: "resourceVersion", edit: func(s *discoveryv1.EndpointSlice) { s.ResourceVersion = "9" }, same: true},
		{name: "trigger time", edit: func(s *discoveryv1.EndpointSlice) {
			s.Annotations = map[string]string{annotationTriggerTime: "2026-12-07T02:00:00Z"}
		}, same: true},
		{name: "other label", edit: func(s *discoveryv1.EndpointSlice) { s.Labels["x"] = "y" }, same: true},
		{name: "ready", edit: func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = new(false) }},
		{name: "address", edit: func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"10.0.0.2"} }},
		{name: "zone", edit: func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Zone = new("b") }},
		{name: "pod", edit: func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].TargetRef.Name = "web-9" }},
		{name: "zone hints", edit: func(s *discoveryv1.EndpointSlice) {
			s.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "a"}}}
		}},
		{name: "node hints", edit: func(s *discoveryv1.EndpointSlice) {
			s.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForNodes: []discoveryv1.ForNode{{Name: "n1"}}}
		}},
		{name: "empty hints", edit: func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hints = &discoveryv1.EndpointHints{} }, same: true},
		{name: "endpoint added", edit: func(s *discoveryv1.EndpointSlice) { s.Endpoints = append(s.Endpoints, s.Endpoints[0]) }},
		{name: "port", edit: func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = new(int32(81)) }},
		{name: "service", edit: func(s *discoveryv1.EndpointSlice) { s.Labels[discoveryv1.LabelServiceName] = "api" }},
	} {
		edited := base()
		tc.edit(edited)
		if got := SlicesEquivalent(EndpointSliceFromAPI(base()), EndpointSliceFromAPI(edited)); got != tc.same {
			t.Errorf("%s: equivalent %v, want %v", tc.name, got, tc.same)
		}
	}
}

// TestSliceShrinksHints: an endpoint's hints are kept as names in its
// Topology, shared by the endpoints with the same place and hints.
func TestSliceShrinksHints(t *testing.T) {
	s := EndpointSliceFromAPI(fixture.EndpointSlice{Namespace: "n", Name: "web-1", Service: "web", Endpoints: []fixture.Endpoint{
		{Address: "10.0.0.1", NodeName: "n1", Zone: "a", ForZones: []string{"a", "b"}, ForNodes: []string{"n1"}},
		{Address: "10.0.0.2", NodeName: "n1", Zone: "a", ForZones: []string{"a", "b"}, ForNodes: []string{"n1"}},
		{Address: "10.0.0.3", ForZones: []string{"c"}},
		{Address: "10.0.0.4", NodeName: "n1", Zone: "a"},
	}}.API())
	want := []Topology{
		{NodeName: "n1", Zone: "a", ForZones: "a b", ForNodes: "n1"},
		{NodeName: "n1", Zone: "a", ForZones: "a b", ForNodes: "n1"},
		{ForZones: "c"},
		{NodeName: "n1", Zone: "a"},
	}
	for i, e := range s.Endpoints {
		if e.Topology == nil || *e.Topology != want[i] {
			t.Errorf("endpoint %d: topology %+v, want %+v", i, e.Topology, want[i])
		}
	}
	if s.Endpoints[0].Topology != s.Endpoints[1].Topology {
		t.Error("endpoints with the same hints do not share their Topology")
	}
}

// TestEquivalenceKnowsEveryField: a field added to Service, EndpointSlice
// or Endpoint must be compared by the equivalence functions, or named
// here as one DNS does not use.
func TestEquivalenceKnowsEveryField(t *testing.T) {
	for typ, want := range map[reflect.Type]int{
		reflect.TypeFor[Service]():       12, // ResourceVersion is not compared
		reflect.TypeFor[EndpointSlice](): 8,  // ResourceVersion and TriggerTime are not compared
		reflect.TypeFor[Endpoint]():      8,  // compared whole
	} {
		if got := typ.NumField(); got != want {
			t.Errorf("%v has %d fields, the equivalence functions know %d: decide whether they compare the new one", typ, got, want)
		}
	}
}
