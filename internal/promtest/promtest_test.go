package promtest

import (
	"fmt"
	"runtime"
	"testing"
)

// outcomeTB records how a test ended. Fatalf and Skipf end the calling
// goroutine as testing.T's do, so that Binary's own control flow is what
// is tested.
type outcomeTB struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (o *outcomeTB) Fatalf(format string, args ...any) {
	o.failed, o.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (o *outcomeTB) Skipf(format string, args ...any) {
	o.skipped, o.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// binaryOutcome runs find (Binary or Promtool) on a recorder in a
// goroutine of its own.
func binaryOutcome(t *testing.T, find func(testing.TB) string) *outcomeTB {
	o := &outcomeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		find(o)
	}()
	<-done
	return o
}

func TestMissingPrometheusSkipsUnlessRequired(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // an empty directory: no prometheus
	for _, tc := range []struct {
		require     string
		wantFailure bool
	}{
		{require: "", wantFailure: false},
		{require: "0", wantFailure: false},
		{require: "1", wantFailure: true},
	} {
		t.Setenv(RequireEnv, tc.require)
		for name, find := range map[string]func(testing.TB) string{"Binary": Binary, "Promtool": Promtool} {
			o := binaryOutcome(t, find)
			if o.failed != tc.wantFailure || o.skipped == tc.wantFailure {
				t.Errorf("%s with %s=%q and an empty PATH: failed %v, skipped %v; want failed %v (%s)",
					name, RequireEnv, tc.require, o.failed, o.skipped, tc.wantFailure, o.msg)
			}
		}
	}
}
