package zone

import (
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hdns-dev/hdns/policy"
)

// Annotations hdns reads. Everything else on an object is dropped at the
// informer. The policy annotations mean what package policy says.
const (
	AnnotationPolicy    = policy.AnnotationPolicy
	AnnotationWeights   = policy.AnnotationWeights
	AnnotationLoadQuery = policy.AnnotationLoadQuery
	// annotationTriggerTime is set by the EndpointSlice controller to the
	// time of the change that caused the slice's last update.
	annotationTriggerTime = "endpoints.kubernetes.io/last-change-trigger-time"
)

// ServiceKind says which records a Service gets.
type ServiceKind uint8

const (
	// KindClusterIP answers with the Service's cluster IPs (ClusterIP,
	// NodePort and LoadBalancer Services).
	KindClusterIP ServiceKind = iota
	// KindHeadless answers with the ready endpoints' addresses.
	KindHeadless
	// KindExternalName answers with a CNAME to ExternalName.
	KindExternalName
)

// Port is a named port of a Service or an EndpointSlice.
type Port struct {
	Name     string // DNS label; unnamed ports get no SRV records
	Protocol string // lower case: "tcp", "udp", "sctp"
	Port     uint16
}

// Service is the part of a corev1.Service that DNS needs. Values are
// immutable once built; the informer stores them in place of the API object.
type Service struct {
	Namespace, Name string
	Kind            ServiceKind
	ClusterIPs      []netip.Addr
	ExternalName    string // lower case, no trailing dot
	Ports           []Port
	Policy          string // the hdns.dev/policy annotation, if any
	Weights         string // the hdns.dev/weights annotation, if any
	LoadQuery       string // the hdns.dev/load-query annotation, if any
	// AffinityTimeout is the ClientIP sessionAffinity timeout, 0 without
	// session affinity.
	AffinityTimeout time.Duration
	// TrafficDistribution is spec.trafficDistribution ("PreferSameZone",
	// "PreferClose", "PreferSameNode"), "" when unset; the policy package
	// says what it means.
	TrafficDistribution string
	ResourceVersion     string
}

// Endpoint is one endpoint of an EndpointSlice, in 48 bytes: the
// informers keep one per endpoint of the cluster. It is the source's
// record, and snapshots share it rather than copy it: a member points at
// it for the endpoint's address, Pod and hostname.
type Endpoint struct {
	// ids is PodKey followed by Hostname, in one string.
	ids string
	// Topology is where the endpoint runs, shared with the other
	// endpoints of its node; nil when the slice does not say.
	Topology *Topology
	// addr holds the address's 4 or 16 bytes, as family says.
	addr        [16]byte
	podKeyLen   uint16
	family      uint8 // 0 (no address), 4 or 6
	Ready       bool
	Serving     bool
	Terminating bool
}

// NewEndpoint returns an endpoint with these identities, not yet ready
// (the conditions are its fields). hostname must be lower case.
func NewEndpoint(addr netip.Addr, podKey, hostname string) Endpoint {
	if len(podKey) > math.MaxUint16 {
		podKey = "" // no Pod's: namespace/name is at most 317 octets
	}
	e := Endpoint{ids: podKey + hostname, podKeyLen: uint16(len(podKey))}
	switch addr = addr.Unmap(); {
	case addr.Is4():
		a := addr.As4()
		copy(e.addr[:], a[:])
		e.family = 4
	case addr.Is6():
		e.addr, e.family = addr.As16(), 6
	}
	return e
}

// Address is the endpoint's first address that parses; invalid when none
// does. The API makes all of an endpoint's addresses fungible and has
// clients use the first, so DNS never names the others.
func (e *Endpoint) Address() netip.Addr {
	a, _ := netip.AddrFromSlice(e.ip())
	return a
}

// ip returns the address's 4 or 16 bytes (nil without one), which are
// the endpoint's own and must not be modified.
func (e *Endpoint) ip() []byte {
	switch e.family {
	case 4:
		return e.addr[:4:4]
	case 6:
		return e.addr[:16:16]
	}
	return nil
}

// Hostname is the endpoint's hostname, in lower case, or "".
func (e *Endpoint) Hostname() string { return e.ids[e.podKeyLen:] }

// PodKey is "namespace/name" of the Pod the endpoint's targetRef names, ""
// when it names no Pod: the endpoint's key in the ledger and in the
// policies' hashing (policy.Endpoint.Key).
func (e *Endpoint) PodKey() string { return e.ids[:e.podKeyLen] }

// PodName is the name of the Pod the endpoint's targetRef names, or "".
func (e *Endpoint) PodName() string {
	_, name, _ := strings.Cut(e.PodKey(), "/")
	return name
}

// EndpointSlice is the part of a discoveryv1.EndpointSlice that DNS needs.
type EndpointSlice struct {
	Namespace, Name string
	Service         string // the kubernetes.io/service-name label
	AddressType     discoveryv1.AddressType
	Ports           []Port
	Endpoints       []Endpoint
	// TriggerTime is the controller's last-change-trigger-time, or zero.
	TriggerTime     time.Time
	ResourceVersion string
}

// ServiceFromAPI shrinks an API Service.
func ServiceFromAPI(s *corev1.Service) *Service {
	out := &Service{
		Namespace:       s.Namespace,
		Name:            s.Name,
		Policy:          s.Annotations[AnnotationPolicy],
		Weights:         s.Annotations[AnnotationWeights],
		LoadQuery:       strings.TrimSpace(s.Annotations[AnnotationLoadQuery]),
		ResourceVersion: s.ResourceVersion,
	}
	if s.Spec.TrafficDistribution != nil {
		out.TrafficDistribution = *s.Spec.TrafficDistribution
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		out.AffinityTimeout = time.Duration(corev1.DefaultClientIPServiceAffinitySeconds) * time.Second
		if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
			out.AffinityTimeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	switch {
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		out.Kind = KindExternalName
		out.ExternalName = strings.TrimSuffix(strings.ToLower(s.Spec.ExternalName), ".")
	case s.Spec.ClusterIP == corev1.ClusterIPNone:
		out.Kind = KindHeadless
	default:
		out.Kind = KindClusterIP
		ips := s.Spec.ClusterIPs
		if len(ips) == 0 && s.Spec.ClusterIP != "" {
			ips = []string{s.Spec.ClusterIP}
		}
		for _, ip := range ips {
			if a, err := netip.ParseAddr(ip); err == nil {
				out.ClusterIPs = append(out.ClusterIPs, a.Unmap())
			}
		}
	}
	for _, p := range s.Spec.Ports {
		out.Ports = append(out.Ports, Port{Name: p.Name, Protocol: protocol(p.Protocol), Port: uint16(p.Port)})
	}
	var strs stringPack
	strs.add(&out.Namespace, &out.Name, &out.ExternalName, &out.Policy, &out.Weights, &out.LoadQuery, &out.TrafficDistribution, &out.ResourceVersion)
	for i := range out.Ports {
		strs.add(&out.Ports[i].Name)
	}
	strs.pack()
	return out
}

// EndpointSliceFromAPI shrinks an API EndpointSlice.
func EndpointSliceFromAPI(s *discoveryv1.EndpointSlice) *EndpointSlice {
	out := &EndpointSlice{
		Namespace:       s.Namespace,
		Name:            s.Name,
		Service:         s.Labels[discoveryv1.LabelServiceName],
		AddressType:     addressType(s.AddressType),
		ResourceVersion: s.ResourceVersion,
	}
	if t, err := time.Parse(time.RFC3339Nano, s.Annotations[annotationTriggerTime]); err == nil {
		out.TriggerTime = t
	}
	for _, p := range s.Ports {
		if p.Port == nil {
			continue
		}
		var proto corev1.Protocol
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		var name string
		if p.Name != nil {
			name = *p.Name
		}
		out.Ports = append(out.Ports, Port{Name: name, Protocol: protocol(proto), Port: uint16(*p.Port)})
	}
	out.Endpoints = make([]Endpoint, 0, len(s.Endpoints))
	for _, e := range s.Endpoints {
		var addr netip.Addr
		for _, a := range e.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				addr = ip.WithZone("")
				break
			}
		}
		podKey, hostname := "", ""
		if e.TargetRef != nil && e.TargetRef.Kind == "Pod" && e.TargetRef.Name != "" {
			podKey = s.Namespace + "/" + e.TargetRef.Name
		}
		if e.Hostname != nil {
			hostname = strings.ToLower(*e.Hostname)
		}
		ep := NewEndpoint(addr, podKey, hostname)
		// nil conditions mean "unknown", which the API says to treat as
		// ready/serving and not terminating.
		ep.Ready = e.Conditions.Ready == nil || *e.Conditions.Ready
		ep.Serving = e.Conditions.Serving == nil || *e.Conditions.Serving
		ep.Terminating = e.Conditions.Terminating != nil && *e.Conditions.Terminating
		var t Topology
		if e.NodeName != nil {
			t.NodeName = *e.NodeName
		}
		if e.Zone != nil {
			t.Zone = *e.Zone
		}
		if h := e.Hints; h != nil {
			t.ForZones = hintNames(len(h.ForZones), func(i int) string { return h.ForZones[i].Name })
			t.ForNodes = hintNames(len(h.ForNodes), func(i int) string { return h.ForNodes[i].Name })
		}
		if t != (Topology{}) {
			ep.Topology = topologies.intern(t)
		}
		out.Endpoints = append(out.Endpoints, ep)
	}
	var strs stringPack
	strs.add(&out.Namespace, &out.Name, &out.Service, &out.ResourceVersion)
	for i := range out.Ports {
		strs.add(&out.Ports[i].Name)
	}
	for i := range out.Endpoints {
		strs.add(&out.Endpoints[i].ids)
	}
	strs.pack()
	return out
}

// ServicesEquivalent reports whether a and b give the same records and
// policy: everything DNS uses is equal, whatever their resourceVersion. A
// source drops an update between equivalent objects, which would rebuild
// nothing.
func ServicesEquivalent(a, b *Service) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Kind == b.Kind &&
		slices.Equal(a.ClusterIPs, b.ClusterIPs) && a.ExternalName == b.ExternalName &&
		slices.Equal(a.Ports, b.Ports) && a.Policy == b.Policy && a.Weights == b.Weights &&
		a.LoadQuery == b.LoadQuery && a.AffinityTimeout == b.AffinityTimeout &&
		a.TrafficDistribution == b.TrafficDistribution
}

// SlicesEquivalent reports whether a and b give the same records, as
// ServicesEquivalent does for Services. Their resourceVersion and trigger
// time do not count: the controller moves the trigger time only with a
// change of what DNS uses, and a slice that changed nothing else programmed
// nothing.
func SlicesEquivalent(a, b *EndpointSlice) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Service == b.Service &&
		a.AddressType == b.AddressType && slices.Equal(a.Ports, b.Ports) &&
		slices.EqualFunc(a.Endpoints, b.Endpoints, endpointsEquivalent)
}

// endpointsEquivalent compares endpoints with their topology's names, not
// its interned copy's address.
func endpointsEquivalent(a, b Endpoint) bool {
	ta, tb := a.Topology, b.Topology
	a.Topology, b.Topology = nil, nil
	return a == b && (ta == tb || (ta != nil && tb != nil && *ta == *tb))
}

// stringPack copies the strings a shrunk object keeps into one allocation
// and points them into it. The API decoder allocated each among the
// garbage of the whole object, and of the whole list around it; kept one
// by one, they would each pin a span of that garbage's memory after it is
// collected. The informers keep tens of thousands of objects.
type stringPack struct {
	fields []*string
	size   int
}

func (p *stringPack) add(fields ...*string) {
	for _, f := range fields {
		p.fields = append(p.fields, f)
		p.size += len(*f)
	}
}

func (p *stringPack) pack() {
	var b strings.Builder
	b.Grow(p.size)
	for _, f := range p.fields {
		b.WriteString(*f)
	}
	all, off := b.String(), 0
	for _, f := range p.fields {
		*f, off = all[off:off+len(*f)], off+len(*f)
	}
}

// addressType returns the package's constant for t, so that no slice
// keeps the decoder's copy.
func addressType(t discoveryv1.AddressType) discoveryv1.AddressType {
	for _, c := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN} {
		if t == c {
			return c
		}
	}
	return t
}

// Topology is the node and zone an endpoint runs in, and its
// EndpointSlice hints: the zones and nodes whose clients it should serve.
type Topology struct {
	NodeName, Zone string
	// ForZones and ForNodes are the names of hints.forZones and
	// hints.forNodes, separated by spaces (which no zone or node name
	// holds); "" without hints.
	ForZones, ForNodes string
}

// hintNames joins the n names that name returns with spaces, skipping
// empty ones; one name is returned as it is, without copying.
func hintNames(n int, name func(i int) string) string {
	var joined string
	for i := range n {
		switch s := name(i); {
		case s == "":
		case joined == "":
			joined = s
		default:
			joined += " " + s
		}
	}
	return joined
}

// hintedDistribution is the trafficDistribution the hints of the slices'
// endpoints stand for (policy.HintedDistribution), "" when none has hints.
func hintedDistribution(ss []*EndpointSlice) string {
	zones, nodes := false, false
	for _, s := range ss {
		for i := range s.Endpoints {
			if t := s.Endpoints[i].Topology; t != nil {
				zones, nodes = zones || t.ForZones != "", nodes || t.ForNodes != ""
			}
		}
	}
	return policy.HintedDistribution(zones, nodes)
}

// topologies holds the topologies of the endpoints shrunk so far.
var topologies interner

// maxInterned bounds an interner: a cluster has far fewer nodes, but
// nodes come and go under new names.
const maxInterned = 1 << 14

// interner returns one copy of each Topology it is given, so that the
// endpoints of one node share a pointer to it instead of a copy of its
// names each from the API decoder. When it holds maxInterned topologies it
// forgets them all: the copies handed out stay valid, and are shared with
// later ones again as they come.
type interner struct {
	mu sync.Mutex
	m  map[Topology]*Topology
}

func (in *interner) intern(t Topology) *Topology {
	in.mu.Lock()
	defer in.mu.Unlock()
	if c, ok := in.m[t]; ok {
		return c
	}
	if in.m == nil || len(in.m) >= maxInterned {
		in.m = make(map[Topology]*Topology)
	}
	c := &t
	in.m[t] = c
	return c
}

// protocol returns p in lower case, as a constant for the protocols
// Kubernetes knows.
func protocol(p corev1.Protocol) string {
	switch p {
	case "", corev1.ProtocolTCP:
		return "tcp"
	case corev1.ProtocolUDP:
		return "udp"
	case corev1.ProtocolSCTP:
		return "sctp"
	}
	return strings.ToLower(string(p))
}

// The informer cache stores these small structs instead of API objects, so
// they carry just enough of runtime.Object and metav1.ObjectMetaAccessor for
// the cache's key functions.

func (s *Service) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (s *Service) DeepCopyObject() runtime.Object   { c := *s; return &c }
func (s *Service) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion}
}

func (s *EndpointSlice) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (s *EndpointSlice) DeepCopyObject() runtime.Object   { c := *s; return &c }
func (s *EndpointSlice) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion}
}
