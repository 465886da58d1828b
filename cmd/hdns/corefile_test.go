package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hdns-dev/hdns/internal/fixture"
)

// TestCorefileFromManifests: `hdns corefile` prints the blocks of the
// opted-in headless Services of --manifests, forwarding to the addresses
// of --coredns-forward, or to those of the Service it names.
func TestCorefileFromManifests(t *testing.T) {
	dir := t.TempDir()
	objs := []runtime.Object{
		fixture.Service{Namespace: "awx", Name: "web", Headless: true, Annotations: map[string]string{"hdns.dev/policy": "round-robin"}}.API(),
		fixture.Service{Namespace: "awx", Name: "db", Headless: true}.API(),
		fixture.Service{Namespace: "awx", Name: "api", ClusterIPs: []string{"10.96.1.1"}, Annotations: map[string]string{"hdns.dev/policy": "random"}}.API(),
		fixture.Service{Namespace: "hdns", Name: "hdns", ClusterIPs: []string{"10.96.0.53"},
			Ports: []fixture.Port{{Name: "dns", Protocol: "UDP", Port: 53}}}.API(),
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(fixture.YAML(t, objs...)), 0o644); err != nil {
		t.Fatal(err)
	}
	block := func(to string) string {
		return "web.awx.svc.cluster.local:53 {\n    forward . " + to + "\n}\n"
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--coredns-forward", "10.0.0.53,10.0.0.54:5353"}, block("10.0.0.53:53 10.0.0.54:5353")},
		{nil, block("10.96.0.53:53")},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		args := append([]string{"corefile", "--manifests", dir}, tt.args...)
		if code := run(context.Background(), context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("hdns %v: exit %d: %s", args, code, stderr.String())
		}
		if out := stdout.String(); !strings.HasSuffix(out, tt.want) || strings.Count(out, "{") != 1 {
			t.Errorf("hdns %v printed:\n%s\nwant it to end with the one block:\n%s", args, out, tt.want)
		}
	}
}
