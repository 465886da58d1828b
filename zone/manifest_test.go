package zone

import (
	"strings"
	"testing"

	"github.com/hdns-dev/hdns/internal/fixture"
)

func TestParseManifestErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{
			name: "bad YAML names the file, line and document",
			yaml: "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n# second\napiVersion: v1\nkind: Service\nmetadata: {name: [b\n",
			want: []string{"f.yaml:5:", "document 2"},
		},
		{
			name: "unknown field names the object kind",
			yaml: "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIp: None}\n",
			want: []string{"f.yaml:1:", "Service", `unknown field "spec.clusterIp"`},
		},
		{
			name: "bad endpoint address names the slice",
			yaml: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: ns, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.300]\n",
			want: []string{"EndpointSlice ns/s", "endpoint 0"},
		},
		{
			name: "IPv6 address in an IPv4 slice",
			yaml: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\nendpoints:\n- addresses: [\"fd00::1\"]\n",
			want: []string{"EndpointSlice default/s", "not of addressType IPv4"},
		},
		{
			name: "slice without its Service label",
			yaml: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nendpoints: []\n",
			want: []string{"kubernetes.io/service-name"},
		},
		{
			name: "bad hostname",
			yaml: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\nendpoints:\n- {addresses: [10.0.0.1], hostname: a_b}\n",
			want: []string{"hostname \"a_b\""},
		},
		{
			name: "Service without a name",
			yaml: "apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n",
			want: []string{"metadata.name is empty"},
		},
		{
			name: "bad cluster IP",
			yaml: "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.0.0.1.1}\n",
			want: []string{"Service default/a", "clusterIP"},
		},
		{
			name: "bad item in a List names the item",
			yaml: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: ok}}\n- {apiVersion: v1, kind: Service, metadata: {name: Not_OK}}\n",
			want: []string{"List item 1", `name "Not_OK"`},
		},
		{
			name: "a document without kind",
			yaml: "metadata: {name: a}\n",
			want: []string{"no kind"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseManifest("f.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseManifestKinds(t *testing.T) {
	yaml := `# leading comment
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: x}
  spec: {clusterIP: None}
- apiVersion: v1
  kind: Pod
  metadata: {name: p}
---
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSliceList
items:
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: a-1, namespace: x, labels: {kubernetes.io/service-name: a}}
  addressType: IPv4
  endpoints: [{addresses: [10.0.0.1]}]
---
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "x"}, "spec": {"type": "ExternalName", "externalName": "B.example.com."}}
---
apiVersion: v1
kind: Namespace
metadata: {name: x}
`
	svcs, slices, err := ParseManifest("f.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 2 || len(slices) != 1 {
		t.Fatalf("got %d Services and %d slices, want 2 and 1", len(svcs), len(slices))
	}
	if svcs[1].Kind != KindExternalName || svcs[1].ExternalName != "b.example.com" {
		t.Errorf("ExternalName Service %+v", svcs[1])
	}
}

const oneService = `apiVersion: v1
kind: Service
metadata: {name: a, namespace: x}
spec: {clusterIP: 10.0.0.1}
`

// FuzzParseManifest checks that no manifest, however broken, panics the
// parser, and that whatever it accepts builds a snapshot.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(oneService))
	f.Add([]byte(fixture.YAML(f, dualStackObjects()...)))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: List, items: [null]}]\n"))
	f.Add([]byte("---\n--- \n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		svcs, slices, err := ParseManifest("fuzz.yaml", data)
		if err != nil {
			return
		}
		Build(testOptions(t), 1, svcs, slices)
	})
}

func TestParseManifestDuplicatesAndRanges(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{oneService + "---\n" + oneService, "Service x/a is defined twice"},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 70000}]}\n", "not in 1-65535"},
		{"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: a}}\naddressType: IPv6\nendpoints:\n- addresses: [\"fe80::1%eth0\"]\n", "has a zone"},
	} {
		if _, _, err := ParseManifest("f.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

func TestParseManifestReadsTrafficDistribution(t *testing.T) {
	svcs, _, err := ParseManifest("f.yaml", []byte("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec: {clusterIP: None, trafficDistribution: PreferSameNode}\n"))
	if err != nil || len(svcs) != 1 || svcs[0].TrafficDistribution != "PreferSameNode" {
		t.Fatalf("services %+v, err %v: want trafficDistribution PreferSameNode", svcs, err)
	}
}
