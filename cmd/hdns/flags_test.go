package main

import (
	"bytes"
	"errors"
	"flag"
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
