package policy

import (
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr string
	}{
		{spec: "ordered"},
		{spec: " ordered , ordered "},
		{spec: "", wantErr: "empty policy"},
		{spec: "nosuch", wantErr: `unknown step "nosuch"`},
		{spec: "ordered=3", wantErr: "takes no arguments"},
		{spec: "ordered,", wantErr: `unknown step ""`},
	}
	for _, tt := range tests {
		c, err := Parse(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %v, want it to contain %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.spec, err)
			continue
		}
		if c.String() != strings.TrimSpace(tt.spec) {
			t.Errorf("Parse(%q).String() = %q", tt.spec, c.String())
		}
	}
}

func TestOrderedKeepsInputAndDoesNotAlias(t *testing.T) {
	cands := make([]Endpoint, 5)
	in := []int{4, 0, 2}
	var s Scratch
	for _, spec := range []string{"ordered", "ordered, ordered, ordered"} {
		c, err := Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		out := c.Pick(&Request{}, cands, in, []int{9}, &s)
		if want := []int{9, 4, 0, 2}; !slices.Equal(out, want) {
			t.Errorf("%s: Pick = %v, want %v (appended to out)", spec, out, want)
		}
		if !slices.Equal(in, []int{4, 0, 2}) {
			t.Errorf("%s: Pick modified its input: %v", spec, in)
		}
	}
}

func TestRegisterDuplicatePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering a second builder named ordered did not panic")
		}
	}()
	Register(orderedBuilder{})
}

// evenFilter keeps the candidates of even index, in order.
type evenFilter struct{}

func (evenFilter) Pick(_ *Request, _ []Endpoint, in, out []int) []int {
	for _, i := range in {
		if i%2 == 0 {
			out = append(out, i)
		}
	}
	return out
}

// registerTestSteps registers the traits tests' steps once per process
// (go test -count=N runs the test N times).
var registerTestSteps sync.Once

// upkeepCalls counts the Expire and Close calls of test-all's steps.
var upkeepCalls [2]int

// upkept counts its upkeep calls.
type upkept struct {
	ordered
	expired, closed *int
}

func (u upkept) Expire() { *u.expired++ }
func (u upkept) Close()  { *u.closed++ }

// TestChainTraitsAreTheStepsDeclared: a chain has exactly the union of its
// builders' declared traits. A filter that declares none does not make its
// chain reorder (its SRV answers keep priority 0), a step that declares
// several gives its chain all of them, and a step that declares upkeep
// gets Expire at each Sweep and Close when its chain is dropped.
func TestChainTraitsAreTheStepsDeclared(t *testing.T) {
	var expired, closed int
	registerTestSteps.Do(func() {
		Register(simpleBuilder{name: "test-even", build: func() Step { return evenFilter{} }})
		Register(simpleBuilder{name: "test-all", traits: Reorders | ReadsClient | WantsTerminating | ReadsLoad | NeedsUpkeep,
			build: func() Step { return upkept{expired: &upkeepCalls[0], closed: &upkeepCalls[1]} }})
		Register(simpleBuilder{name: "test-liar", traits: NeedsUpkeep, build: func() Step { return evenFilter{} }})
	})
	upkeepCalls = [2]int{}

	for _, tc := range []struct {
		spec string
		want Traits
	}{
		{"test-even", 0},
		{"test-even, first=1, ttl=5", 0},
		{"drain, test-even", WantsTerminating},
		{"test-even, round-robin", Reorders},
		{"test-all", Reorders | ReadsClient | WantsTerminating | ReadsLoad | NeedsUpkeep},
		{"sticky, least-loaded", Reorders | ReadsClient | ReadsLoad | NeedsUpkeep},
	} {
		c, err := Parse(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if c.Traits() != tc.want {
			t.Errorf("%s: traits %05b, want %05b", tc.spec, c.Traits(), tc.want)
		}
		got := [4]bool{c.Reorders(), c.UsesClient(), c.OfferTerminating(), c.UsesLoad()}
		want := [4]bool{tc.want&Reorders != 0, tc.want&ReadsClient != 0, tc.want&WantsTerminating != 0, tc.want&ReadsLoad != 0}
		if got != want {
			t.Errorf("%s: Reorders, UsesClient, OfferTerminating, UsesLoad = %v, want %v", tc.spec, got, want)
		}
	}
	if _, err := Parse("test-liar"); err == nil {
		t.Error("a step that declares NeedsUpkeep without Expire and Close parsed")
	}

	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Compile(ServicePolicy{Service: "n/a", Annotation: "test-all"}); err != nil {
		t.Fatal(err)
	}
	comp.Sweep() // keeps n/a's chain: expires it
	comp.Sweep() // n/a was not compiled since: drops it
	if expired, closed = upkeepCalls[0], upkeepCalls[1]; expired != 1 || closed != 1 {
		t.Errorf("upkeep: %d Expire, %d Close; want 1 each", expired, closed)
	}
}
