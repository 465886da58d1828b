package kube

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/sourcetest"
	"github.com/hdns-dev/hdns/zone"
)

// TestSourceNodes: Nodes reach the sink shrunk, a heartbeat (a status
// condition's new time) reaches no one, a new address does, and a relist
// deletes a Node that went during the outage.
func TestSourceNodes(t *testing.T) {
	a := fixture.Node{Name: "node-a", Labels: map[string]string{corev1.LabelTopologyZone: "zone-a", corev1.LabelTopologyRegion: "r"},
		InternalIP: "192.168.0.1", PodCIDRs: []string{"10.0.1.0/24"}}.API()
	b := fixture.Node{Name: "node-b", InternalIP: "192.168.0.2"}.API()
	client := fake.NewClientset(a, b)
	var down atomic.Bool
	m := zone.NewMetrics(prometheus.NewRegistry())
	src := &Source{Client: client, Nodes: true, Metrics: m, Log: discard, ProbeInterval: 10 * time.Millisecond, Probe: outageProbe(&down)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sink sourcetest.Sink
	go src.Run(ctx, &sink)
	sourcetest.WaitFor(t, func() bool { _, _, ok := sink.List(); return ok })
	nodes := sink.Nodes()
	if len(nodes) != 2 || nodes[0].Zone != "zone-a" || nodes[0].Region != "r" ||
		len(nodes[0].PodCIDRs) != 1 || nodes[0].PodCIDRs[0].String() != "10.0.1.0/24" ||
		len(nodes[0].Addresses) != 1 || nodes[0].Addresses[0].String() != "192.168.0.1" {
		t.Fatalf("nodes after sync: %+v", nodes)
	}
	before := len(sink.Changes())

	a.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Minute))
	a.ResourceVersion = "2"
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	a.Status.Addresses = append(a.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.1"})
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, func() bool { return len(sink.Changes()) > before })
	time.Sleep(50 * time.Millisecond)
	if c := sink.Changes()[before:]; len(c) != 1 || c[0].Kind != zone.ObjectNode || len(c[0].Node.Addresses) != 2 {
		t.Errorf("changes %+v, want the new address alone", c)
	}

	// The outage: the set's watch dies, and node-b goes meanwhile.
	down.Store(true)
	sourcetest.WaitFor(t, func() bool { return testutil.ToFloat64(m.SourceUp) == 0 })
	src.current.Load().stop()
	if err := client.CoreV1().Nodes().Delete(ctx, "node-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	sourcetest.WaitFor(t, func() bool { return src.sets.Load() == 2 && len(sink.Nodes()) == 1 })
	if n := sink.Nodes(); n[0].Name != "node-a" {
		t.Errorf("after the relist: %+v", n)
	}
}

// TestNodesReadable: a forbidden list of Nodes means "serve without
// locations", not a failure to start; other errors still are one.
func TestNodesReadable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		listErr error
		want    bool
		wantErr bool
	}{
		{name: "allowed", want: true},
		{name: "forbidden", listErr: apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC: no rule")), want: false},
		{name: "unavailable", listErr: apierrors.NewServiceUnavailable("etcd down"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			if tc.listErr != nil {
				client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, tc.listErr
				})
			}
			got, err := NodesReadable(context.Background(), client)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("NodesReadable = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
