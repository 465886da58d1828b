package zone

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ClusterNode is the part of a corev1.Node (a machine of the cluster, not
// a Node of the zone's name tree) that locating a client needs: where the
// node is, and which addresses are its own or its pods'. The zone
// builds no records from it; it reaches the zone's Sink so that a Sink in
// front of the Publisher (package topology) sees it. Values are immutable
// once built; the informer stores them in place of the API object, and an
// update that changes none of these fields (a heartbeat, a condition) is
// dropped there.
type ClusterNode struct {
	Name   string
	Zone   string // the topology.kubernetes.io/zone label, or ""
	Region string // the topology.kubernetes.io/region label, or ""
	// Addresses are status.addresses that parse as IP addresses (any
	// type: InternalIP, ExternalIP), unmapped, in the order given.
	Addresses []netip.Addr
	// PodCIDRs are spec.podCIDRs (spec.podCIDR when that is empty) that
	// parse, masked and unmapped.
	PodCIDRs        []netip.Prefix
	ResourceVersion string
}

// ClusterNodeFromAPI shrinks an API Node.
func ClusterNodeFromAPI(n *corev1.Node) *ClusterNode {
	out := &ClusterNode{
		Name:            n.Name,
		Zone:            n.Labels[corev1.LabelTopologyZone],
		Region:          n.Labels[corev1.LabelTopologyRegion],
		ResourceVersion: n.ResourceVersion,
	}
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out.Addresses = append(out.Addresses, ip.WithZone("").Unmap())
		}
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out.PodCIDRs = append(out.PodCIDRs, unmapPrefix(p))
		}
	}
	var strs stringPack
	strs.add(&out.Name, &out.Zone, &out.Region, &out.ResourceVersion)
	strs.pack()
	return out
}

// unmapPrefix returns p masked, with an IPv4-mapped IPv6 prefix as the
// IPv4 prefix it covers; a mapped prefix shorter than /96 covers more
// than IPv4 and stays as it is.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// NodesEquivalent reports whether a and b locate clients alike: every
// field but the resourceVersion is equal.
func NodesEquivalent(a, b *ClusterNode) bool {
	return a.Name == b.Name && a.Zone == b.Zone && a.Region == b.Region &&
		slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.PodCIDRs, b.PodCIDRs)
}

func (n *ClusterNode) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (n *ClusterNode) DeepCopyObject() runtime.Object   { c := *n; return &c }
func (n *ClusterNode) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion}
}

// manifestNode checks what the API server would have checked of what
// locating uses, and shrinks the Node.
func manifestNode(n *corev1.Node) (*ClusterNode, error) {
	if n.Name == "" {
		return nil, errors.New("metadata.name is empty")
	}
	for _, c := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
		if c == "" {
			continue
		}
		if _, err := netip.ParsePrefix(c); err != nil {
			return nil, fmt.Errorf("podCIDR: %w", err)
		}
	}
	return ClusterNodeFromAPI(n), nil
}
