package zone

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestClusterNodeFromAPI(t *testing.T) {
	api := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "7", Labels: map[string]string{
			corev1.LabelTopologyZone: "z", corev1.LabelTopologyRegion: "r", "other": "dropped"}},
		Spec: corev1.NodeSpec{PodCIDR: "::ffff:10.1.0.0/120"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "::ffff:192.168.0.1"},
			{Type: corev1.NodeHostName, Address: "n1"},
			{Type: corev1.NodeInternalIP, Address: "fd00::1"},
		}},
	}
	n := ClusterNodeFromAPI(api)
	if n.Name != "n1" || n.Zone != "z" || n.Region != "r" ||
		!slices.Equal(n.Addresses, []netip.Addr{netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("fd00::1")}) ||
		!slices.Equal(n.PodCIDRs, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}) {
		t.Errorf("shrunk %+v", n)
	}
	// A heartbeat moves the resourceVersion and conditions only.
	api.ResourceVersion = "8"
	api.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if m := ClusterNodeFromAPI(api); !NodesEquivalent(n, m) {
		t.Error("a heartbeat is not equivalent")
	}
	api.Spec.PodCIDRs = []string{"10.2.0.0/24"}
	if m := ClusterNodeFromAPI(api); NodesEquivalent(n, m) || m.PodCIDRs[0].String() != "10.2.0.0/24" {
		t.Errorf("spec.podCIDRs does not come before spec.podCIDR: %+v", m)
	}
}
