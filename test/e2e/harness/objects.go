package harness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/hdns-dev/hdns/internal/fixture"
)

const (
	// NodeName is the Node every pod created by the harness is bound to.
	NodeName = "fake-node"
	// NodeIP is the fake node's InternalIP and the pods' hostIP.
	NodeIP = "192.0.2.10"
	// PodImage is the image name put into pod specs; nothing ever pulls it.
	PodImage = "registry.k8s.io/pause:3.10"

	// DefaultWaitTimeout bounds the harness's waits when the caller's
	// context has no deadline.
	DefaultWaitTimeout = 30 * time.Second
	pollInterval       = 50 * time.Millisecond
)

// withDefaultTimeout returns ctx bounded by DefaultWaitTimeout unless it
// already has a deadline.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultWaitTimeout)
}

// poll calls cond every pollInterval until it returns true or an error, or
// ctx (bounded by DefaultWaitTimeout) ends. On timeout it returns an error
// wrapping the context's error and describing the last state via what().
func poll(ctx context.Context, what func() string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s: %w", what(), ctx.Err())
		case <-tick.C:
		}
	}
}

// EnsureNode creates the Node NodeName if it does not exist yet. The
// EndpointSlice controller ignores pods bound to a node it does not know.
// CreateReadyPod calls it, so tests rarely need to.
func (cp *ControlPlane) EnsureNode(ctx context.Context) error {
	cp.nodeMu.Lock()
	defer cp.nodeMu.Unlock()
	if cp.nodeReady {
		return nil
	}
	err := cp.CreateNode(ctx, fixture.Node{
		Name:       NodeName,
		Labels:     map[string]string{corev1.LabelHostname: NodeName},
		InternalIP: NodeIP,
	})
	if err != nil {
		return err
	}
	cp.nodeReady = true
	return nil
}

// CreateNode creates the Node n describes, unless it exists, and writes
// its status (addresses, the Ready condition, capacity) through the status
// subresource, as a kubelet would. An empty Capacity is room for 1000
// pods.
func (cp *ControlPlane) CreateNode(ctx context.Context, n fixture.Node) error {
	if n.Capacity == nil {
		n.Capacity = corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("64"),
			corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods:   resource.MustParse("1000"),
		}
	}
	node := n.API()
	_, err := cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cp.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status = node.Status
		_, err = cp.Client.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("update node %s status: %w", n.Name, err)
	}
	return nil
}

// CreateNamespace creates namespace name and waits (bounded by ctx, or
// DefaultWaitTimeout without a deadline) until its "default" ServiceAccount
// exists, since admission rejects pods before that.
func (cp *ControlPlane) CreateNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns, err := cp.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	var last error
	err = poll(ctx, func() string {
		return fmt.Sprintf("ServiceAccount %s/default (last error: %v)", name, last)
	}, func(ctx context.Context) (bool, error) {
		_, last = cp.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return last == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	return ns, nil
}

// PodOptions describes a pod for CreateReadyPod.
type PodOptions struct {
	// Name is required.
	Name string
	// Labels are the pod's labels, matched by Service selectors.
	Labels map[string]string
	// Hostname and Subdomain set spec.hostname and spec.subdomain; with
	// Subdomain naming a headless Service, the endpoint carries Hostname.
	Hostname, Subdomain string
	// IPv4 is the pod's primary IP (required).
	IPv4 string
	// IPv6, if set, is added as the second pod IP (dual-stack).
	IPv6 string
	// Ports are the container's ports (e.g. named ports for targetPort).
	Ports []corev1.ContainerPort
	// NotReady creates the pod Running but with Ready=False.
	NotReady bool
	// Node and HostIP bind the pod to a Node the test created
	// (CreateNode) and give its hostIP; empty, the pod runs on NodeName
	// at NodeIP.
	Node, HostIP string
}

// CreateReadyPod creates a pod in namespace ns bound to o.Node, or to
// NodeName (creating the Node if needed), and writes its status as a
// kubelet would: phase Running, the given pod IPs, its hostIP, a running
// container and
// Ready/ContainersReady True (False with NotReady). It returns the pod as
// stored after the status write.
func (cp *ControlPlane) CreateReadyPod(ctx context.Context, ns string, o PodOptions) (*corev1.Pod, error) {
	if o.Name == "" {
		return nil, errors.New("create pod: PodOptions.Name is required")
	}
	if err := checkIP(o.IPv4, true); err != nil {
		return nil, fmt.Errorf("create pod %s/%s: IPv4: %w", ns, o.Name, err)
	}
	if o.IPv6 != "" {
		if err := checkIP(o.IPv6, false); err != nil {
			return nil, fmt.Errorf("create pod %s/%s: IPv6: %w", ns, o.Name, err)
		}
	}
	node, hostIP := o.Node, o.HostIP
	if node == "" {
		if err := cp.EnsureNode(ctx); err != nil {
			return nil, err
		}
		node, hostIP = NodeName, NodeIP
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: ns, Labels: o.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			Hostname:                      o.Hostname,
			Subdomain:                     o.Subdomain,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name:  "app",
				Image: PodImage,
				Ports: o.Ports,
			}},
		},
	}
	created, err := cp.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", ns, o.Name, err)
	}

	now := metav1.Now()
	podIPs := []corev1.PodIP{{IP: o.IPv4}}
	if o.IPv6 != "" {
		podIPs = append(podIPs, corev1.PodIP{IP: o.IPv6})
	}
	created.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		PodIP:     o.IPv4,
		PodIPs:    podIPs,
		StartTime: &now,
		QOSClass:  corev1.PodQOSBestEffort,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:         "app",
			Image:        PodImage,
			ImageID:      PodImage,
			ContainerID:  "containerd://hdns-e2e-" + ns + "-" + o.Name,
			Started:      new(true),
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			RestartCount: 0,
		}},
	}
	setReadiness(&created.Status, !o.NotReady, now)
	updated, err := cp.Client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("write status of pod %s/%s: %w", ns, o.Name, err)
	}
	return updated, nil
}

// checkIP validates that s is an IPv4 (v4 true) or IPv6 address.
func checkIP(s string, v4 bool) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("parse %q: %w", s, err)
	}
	if v4 != a.Is4() {
		return fmt.Errorf("%q is not an IPv%s address", s, map[bool]string{true: "4", false: "6"}[v4])
	}
	return nil
}

// setReadiness sets the Ready and ContainersReady conditions and the
// containers' ready flags, touching LastTransitionTime only on change.
func setReadiness(st *corev1.PodStatus, ready bool, now metav1.Time) {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	for _, typ := range []corev1.PodConditionType{corev1.ContainersReady, corev1.PodReady} {
		found := false
		for i := range st.Conditions {
			c := &st.Conditions[i]
			if c.Type != typ {
				continue
			}
			found = true
			if c.Status != status {
				c.Status, c.LastTransitionTime = status, now
			}
		}
		if !found {
			st.Conditions = append(st.Conditions, corev1.PodCondition{Type: typ, Status: status, LastTransitionTime: now})
		}
	}
	for i := range st.ContainerStatuses {
		st.ContainerStatuses[i].Ready = ready
	}
}

// SetPodReady flips the Ready and ContainersReady conditions (and the
// containers' ready flags) of pod ns/name through the status subresource,
// retrying on conflicts.
func (cp *ControlPlane) SetPodReady(ctx context.Context, ns, name string, ready bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := cp.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		setReadiness(&pod.Status, ready, metav1.Now())
		_, err = cp.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set pod %s/%s ready=%t: %w", ns, name, ready, err)
	}
	return nil
}

// WaitForEndpointSlices polls the EndpointSlices of Service ns/service
// (label kubernetes.io/service-name) until cond returns true for them, and
// returns those slices. It is bounded by ctx, or by DefaultWaitTimeout when
// ctx has no deadline; on timeout the error summarizes the last slices seen.
// List errors are retried (the API server may be restarting).
func (cp *ControlPlane) WaitForEndpointSlices(ctx context.Context, ns, service string, cond func([]discoveryv1.EndpointSlice) bool) ([]discoveryv1.EndpointSlice, error) {
	var (
		last    []discoveryv1.EndpointSlice
		lastErr error
	)
	err := poll(ctx, func() string {
		return fmt.Sprintf("EndpointSlices of %s/%s; last seen: %s (last error: %v)", ns, service, DescribeSlices(last), lastErr)
	}, func(ctx context.Context) (bool, error) {
		list, err := cp.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + service,
		})
		if err != nil {
			lastErr = err
			return false, nil
		}
		last = list.Items
		return cond(last), nil
	})
	if err != nil {
		return last, err
	}
	return last, nil
}

// DescribeSlices renders slices compactly for test failure messages, e.g.
// "web-abc(IPv4)[10.0.0.1 host=web-0 ready=true]".
func DescribeSlices(slices []discoveryv1.EndpointSlice) string {
	if len(slices) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, s := range slices {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s(%s)[", s.Name, s.AddressType)
		for j, ep := range s.Endpoints {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s host=%s ready=%s", strings.Join(ep.Addresses, "/"), deref(ep.Hostname), boolStr(ep.Conditions.Ready))
		}
		b.WriteString("]")
	}
	return b.String()
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func boolStr(b *bool) string {
	if b == nil {
		return "<nil>"
	}
	return fmt.Sprint(*b)
}

// SetReadiness sets pod's Ready and ContainersReady conditions and its
// containers' ready flags in place, as SetPodReady does, without writing
// anything. It is for callers that write the status themselves, e.g. to
// time the write.
func SetReadiness(pod *corev1.Pod, ready bool) {
	setReadiness(&pod.Status, ready, metav1.Now())
}
