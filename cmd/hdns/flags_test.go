package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestFlagsDoubleDash: flags take the --flag form that manifests copy,
// lists repeat or take commas, and --help prints every flag in that form.
func TestFlagsDoubleDash(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseFlags([]string{"--zone", "a.test", "--zone=b.test,c.test", "--listen=:5353", "--pprof"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.zones.values, []string{"a.test", "b.test", "c.test"}) || c.listen != ":5353" || !c.pprof {
		t.Errorf("parsed %+v", c)
	}
	if _, err := parseFlags([]string{"--help"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"--zone strings", "--manifests string", "--ttl duration", "--pprof"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := parseFlags([]string{"-listen", ":53"}, &stderr); err == nil {
		t.Error("-listen (one dash) accepted; pflag reads it as shorthands and must refuse it")
	}
}

// TestCorednsForward: --coredns-forward takes addresses, with port 53 by
// default, or exactly one Service.
func TestCorednsForward(t *testing.T) {
	tests := []struct {
		values  []string
		want    string // upstreams, or the Service as namespace/name
		wantErr bool
	}{
		{values: []string{"hdns/hdns"}, want: "hdns/hdns"},
		{values: []string{"10.96.0.53", "[fd00::53]:5353"}, want: "[10.96.0.53:53 [fd00::53]:5353]"},
		{values: []string{"10.96.0.53", "hdns/hdns"}, wantErr: true},
		{values: []string{"hdns/"}, wantErr: true},
		{values: []string{"hdns.example"}, wantErr: true},
	}
	for _, tt := range tests {
		f := corednsFlags{forward: listFlag{values: tt.values}, port: 53}
		cf, ref, err := f.corefile([]string{"cluster.local."})
		got := fmt.Sprint(cf.Upstreams)
		if ref.Name != "" {
			got = ref.Namespace + "/" + ref.Name
		}
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("--coredns-forward %v: %s, %v; want %s (error %t)", tt.values, got, err, tt.want, tt.wantErr)
		}
	}
}
