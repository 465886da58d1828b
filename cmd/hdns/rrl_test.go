package main

import (
	"io"
	"testing"
	"time"
)

func TestRRLFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		on, bad bool
	}{
		{nil, false, false},
		{[]string{"--rrl-responses-per-second", "10"}, true, false},
		{[]string{"--rrl-responses-per-second", "10", "--rrl-slip", "0", "--rrl-window", "5s"}, true, false},
		{[]string{"--rrl-errors-per-second", "10"}, false, true},
		{[]string{"--rrl-responses-per-second", "10", "--rrl-window", "100ms"}, false, true},
		{[]string{"--rrl-responses-per-second", "10", "--rrl-ipv4-prefix-length", "33"}, false, true},
		{[]string{"--rrl-responses-per-second", "10", "--rrl-slip", "-1"}, false, true},
	} {
		c, err := parseFlags(tc.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		conf, on, err := c.rrl.config()
		if on != tc.on || (err != nil) != tc.bad {
			t.Errorf("%v: on %v, err %v", tc.args, on, err)
		}
		if on && (conf.Window < time.Second || conf.IPv4PrefixLen != 24 || conf.IPv6PrefixLen != 56) {
			t.Errorf("%v: %+v", tc.args, conf)
		}
	}
}
