package policy

import "fmt"

func init() { Register(orderedBuilder{}) }

// orderedBuilder builds the spec's stable order: every candidate, in the
// order the snapshot lists them. It is the server-wide default, so that
// StatefulSet peer discovery sees every peer.
type orderedBuilder struct{}

func (orderedBuilder) Name() string   { return "ordered" }
func (orderedBuilder) Traits() Traits { return 0 }

func (orderedBuilder) Build(args string) (Step, error) {
	if args != "" {
		return nil, fmt.Errorf("takes no arguments, got %q", args)
	}
	return ordered{}, nil
}

type ordered struct{}

func (ordered) Pick(req *Request, _ []Endpoint, in, out []int) []int {
	return append(out, in[:req.places(len(in))]...)
}

func (ordered) prefix(want int) int { return want }
