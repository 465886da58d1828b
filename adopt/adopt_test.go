package adopt

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/hdns-dev/hdns/internal/sourcetest"
	"github.com/hdns-dev/hdns/zone"
)

func headless(ns, name, policy string) *zone.Service {
	return &zone.Service{Namespace: ns, Name: name, Kind: zone.KindHeadless, Policy: policy}
}

var hdnsAddr = []netip.AddrPort{netip.MustParseAddrPort("10.96.0.53:53")}

func TestRender(t *testing.T) {
	tests := []struct {
		name     string
		corefile Corefile
		services []*zone.Service
		want     string
	}{
		{
			name:     "none opted in",
			corefile: Corefile{Zones: []string{"cluster.local."}, Upstreams: hdnsAddr},
			services: []*zone.Service{headless("awx", "web", ""), {Namespace: "awx", Name: "api", Kind: zone.KindClusterIP, Policy: "round-robin"}},
			want:     header,
		},
		{
			name:     "sorted by namespace then name, one block per zone, duplicates once",
			corefile: Corefile{Zones: []string{"cluster.local.", "corp.example."}, Upstreams: hdnsAddr},
			services: []*zone.Service{headless("awx", "web", "round-robin"), headless("awx", "db", "first=1"), headless("awx", "web", "round-robin"), headless("a", "z", "random")},
			want: header + `z.a.svc.cluster.local:53 {
    forward . 10.96.0.53:53
}
z.a.svc.corp.example:53 {
    forward . 10.96.0.53:53
}
db.awx.svc.cluster.local:53 {
    forward . 10.96.0.53:53
}
db.awx.svc.corp.example:53 {
    forward . 10.96.0.53:53
}
web.awx.svc.cluster.local:53 {
    forward . 10.96.0.53:53
}
web.awx.svc.corp.example:53 {
    forward . 10.96.0.53:53
}
`,
		},
		{
			name: "port and dual-stack upstreams",
			corefile: Corefile{Zones: []string{"cluster.local."}, Port: 8053,
				Upstreams: []netip.AddrPort{netip.MustParseAddrPort("10.96.0.53:53"), netip.MustParseAddrPort("[fd00::53]:5353")}},
			services: []*zone.Service{headless("awx", "web", "sticky")},
			want: header + `web.awx.svc.cluster.local:8053 {
    forward . 10.96.0.53:53 [fd00::53]:5353
}
`,
		},
		{
			name:     "no upstream: header only",
			corefile: Corefile{Zones: []string{"cluster.local."}},
			services: []*zone.Service{headless("awx", "web", "sticky")},
			want:     header,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.corefile.Render(tt.services); got != tt.want {
				t.Errorf("Render:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestServiceUpstreams(t *testing.T) {
	s := &zone.Service{Kind: zone.KindClusterIP, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.53"), netip.MustParseAddr("fd00::53")},
		Ports: []zone.Port{{Name: "metrics", Protocol: "tcp", Port: 8080}, {Name: "dns", Protocol: "udp", Port: 5353}}}
	got := ServiceUpstreams(s)
	if len(got) != 2 || got[0].String() != "10.96.0.53:5353" || got[1].String() != "[fd00::53]:5353" {
		t.Errorf("ServiceUpstreams = %v", got)
	}
	if got := ServiceUpstreams(headless("a", "b", "")); got != nil {
		t.Errorf("headless: %v", got)
	}
}

// TestViewSignalsOnlyWhatMoves: the View passes every call on, and signals
// for a change of the opted-in set or of the upstream's addresses, not for
// other updates.
func TestViewSignalsOnlyWhatMoves(t *testing.T) {
	var next sourcetest.Sink
	hdnsSvc := &zone.Service{Namespace: "hdns", Name: "hdns", Kind: zone.KindClusterIP, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.53")}}
	v := NewView(&next, ServiceRef{Namespace: "hdns", Name: "hdns"})
	signalled := func() bool {
		select {
		case <-v.Changed():
			return true
		default:
			return false
		}
	}
	v.Apply(zone.ServiceChange(zone.OpUpsert, headless("awx", "web", "random")))
	if signalled() {
		t.Error("signal before the first Replace")
	}
	v.Replace([]*zone.Service{hdnsSvc, headless("awx", "web", "")}, nil)
	if !signalled() {
		t.Error("no signal after Replace")
	}
	opted, up, synced := v.State()
	if len(opted) != 0 || len(up) != 1 || up[0].String() != "10.96.0.53:53" || !synced {
		t.Errorf("State = %v %v %v", opted, up, synced)
	}
	steps := []struct {
		name   string
		change zone.Change
		signal bool
	}{
		{"annotate", zone.ServiceChange(zone.OpUpsert, headless("awx", "web", "random")), true},
		{"change the policy only", zone.ServiceChange(zone.OpUpsert, headless("awx", "web", "first=1")), false},
		{"another unannotated Service", zone.ServiceChange(zone.OpUpsert, headless("awx", "db", "")), false},
		{"a slice", zone.SliceChange(zone.OpUpsert, &zone.EndpointSlice{Namespace: "awx", Name: "web-1", Service: "web"}), false},
		{"remove the annotation", zone.ServiceChange(zone.OpUpsert, headless("awx", "web", "")), true},
		{"annotate again", zone.ServiceChange(zone.OpUpsert, headless("awx", "web", "random")), true},
		{"delete", zone.ServiceChange(zone.OpDelete, &zone.Service{Namespace: "awx", Name: "web"}), true},
		{"hdns's Service unchanged", zone.ServiceChange(zone.OpUpsert, hdnsSvc), false},
		{"hdns's Service deleted", zone.ServiceChange(zone.OpDelete, &zone.Service{Namespace: "hdns", Name: "hdns"}), true},
	}
	for _, s := range steps {
		v.Apply(s.change)
		if got := signalled(); got != s.signal {
			t.Errorf("%s: signal %v, want %v", s.name, got, s.signal)
		}
	}
	if svcs, _, _ := next.List(); len(svcs) != 1 || svcs[0].Name != "db" {
		t.Errorf("next holds %v, want only awx/db", svcs)
	}
}

// TestConfigMapWrite: the key is created, rewritten only when its content
// differs, and the ConfigMap's other keys are kept.
func TestConfigMapWrite(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	cm := &ConfigMap{Client: client, Namespace: "kube-system", Name: "coredns-custom"}
	for i, step := range []struct {
		content string
		wrote   bool
	}{{"a", true}, {"a", false}, {"b", true}} {
		wrote, err := cm.Write(ctx, step.content)
		if err != nil || wrote != step.wrote {
			t.Fatalf("step %d: Write(%q) = %v, %v; want %v", i, step.content, wrote, err, step.wrote)
		}
	}
	got, err := client.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns-custom", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Data["other.server"] = "example.test:53 {}\n"
	if _, err := client.CoreV1().ConfigMaps("kube-system").Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if wrote, err := cm.Write(ctx, "c"); err != nil || !wrote {
		t.Fatalf("Write(c) = %v, %v", wrote, err)
	}
	got, _ = client.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns-custom", metav1.GetOptions{})
	if got.Data[DataKey] != "c" || got.Data["other.server"] != "example.test:53 {}\n" {
		t.Errorf("data = %v", got.Data)
	}
}

// TestKeeperWritesChangesOnce: a burst of changes is one write, and a
// change that leaves the blocks as they were writes nothing.
func TestKeeperWritesChangesOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "hdns", Name: "hdns-coredns"}})
	var next sourcetest.Sink
	v := NewView(&next, ServiceRef{})
	k := &Keeper{View: v, Target: &ConfigMap{Client: client, Namespace: "hdns", Name: "hdns-coredns"},
		Corefile: Corefile{Zones: []string{"cluster.local."}, Upstreams: hdnsAddr}, Delay: 50 * time.Millisecond}
	go k.Run(ctx)
	updates := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "update" {
				n++
			}
		}
		return n
	}
	content := func() string {
		cm, err := client.CoreV1().ConfigMaps("hdns").Get(ctx, "hdns-coredns", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return cm.Data[DataKey]
	}
	v.Replace(nil, nil)
	sourcetest.WaitFor(t, func() bool { return content() == header })
	for _, name := range []string{"a", "b", "c"} {
		v.Apply(zone.ServiceChange(zone.OpUpsert, headless("awx", name, "random")))
	}
	sourcetest.WaitFor(t, func() bool { return strings.Count(content(), "forward . ") == 3 })
	if n := updates(); n != 2 {
		t.Errorf("%d updates for the first sync and one burst, want 2", n)
	}
	v.Apply(zone.ServiceChange(zone.OpDelete, &zone.Service{Namespace: "awx", Name: "b"}))
	v.Apply(zone.ServiceChange(zone.OpUpsert, headless("awx", "b", "first=1")))
	time.Sleep(300 * time.Millisecond)
	if n := updates(); n != 2 {
		t.Errorf("a delete and re-create within the delay wrote: %d updates", n)
	}
}
