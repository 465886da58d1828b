package policy

import (
	"slices"
	"strings"
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
