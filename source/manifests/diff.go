package manifests

import (
	"crypto/sha256"
	"fmt"
	"os"

	"github.com/hdns-dev/hdns/zone"
)

// file is what the source holds of one manifest file: the objects of its
// last good parse, as upserts, and the hash of the contents they came from.
type file struct {
	hash    [32]byte
	objects []zone.Change
}

// read reads and, when its contents changed since they were last parsed,
// parses f. It returns the file's new state, or nil when its contents are
// those of held.
func (m *Source) read(f string, held *file) (*file, error) {
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("manifests: %w", err)
	}
	hash := sha256.Sum256(data)
	if held != nil && held.hash == hash {
		return nil, nil
	}
	m.parses.Add(1)
	objects, err := zone.ParseManifestChanges(f, data)
	if err != nil {
		return nil, err
	}
	return &file{hash: hash, objects: objects}, nil
}

// reject picks, among the files whose new objects are in next (nil for a
// file that is gone), one whose objects another file holds, as the API
// server would refuse the second object of a name. It returns "" when there
// is none. A file not in next holds the objects of its last good parse.
func (m *Source) reject(next map[string]*file) (string, error) {
	claims := make(map[zone.ObjectKey]string)
	for _, f := range sortedKeys(next) {
		if next[f] == nil {
			continue
		}
		for _, c := range next[f].objects {
			k := c.Key()
			other, ok := claims[k]
			if !ok {
				if o, held := m.owner[k]; held && o != f {
					if _, moving := next[o]; !moving {
						other, ok = o, true
					}
				}
			}
			if ok {
				name := k.Name // cluster-scoped
				if k.Namespace != "" {
					name = k.Namespace + "/" + k.Name
				}
				return f, fmt.Errorf("manifests: %s %s is defined twice: in %s and %s", kindName(k.Kind), name, other, f)
			}
			claims[k] = f
		}
	}
	return "", nil
}

func kindName(k zone.ObjectKind) string {
	switch k {
	case zone.ObjectService:
		return "Service"
	case zone.ObjectNode:
		return "Node"
	}
	return "EndpointSlice"
}

// accept makes next the files' objects and returns the changes: deletes of
// what they held and hold no more, then upserts of what they hold anew or
// not equivalent. The objects of next must not collide (reject).
func (m *Source) accept(next map[string]*file) []zone.Change {
	prev := make(map[zone.ObjectKey]zone.Change)
	for f := range next {
		if held := m.files[f]; held != nil {
			for _, c := range held.objects {
				prev[c.Key()] = c
				delete(m.owner, c.Key())
			}
		}
	}
	var deletes, upserts []zone.Change
	seen := make(map[zone.ObjectKey]bool)
	for _, f := range sortedKeys(next) {
		if next[f] == nil {
			delete(m.files, f)
			continue
		}
		m.files[f] = next[f]
		for _, c := range next[f].objects {
			k := c.Key()
			m.owner[k] = f
			seen[k] = true
			if old, ok := prev[k]; !ok || !old.Equivalent(c) {
				upserts = append(upserts, c)
			}
		}
	}
	for k, c := range prev {
		if !seen[k] {
			c.Op = zone.OpDelete
			deletes = append(deletes, c)
		}
	}
	return append(deletes, upserts...)
}

// all returns every object the files hold; Nodes as upserts, since
// Replace does not carry them.
func (m *Source) all() ([]*zone.Service, []*zone.EndpointSlice, []zone.Change) {
	var svcs []*zone.Service
	var slices []*zone.EndpointSlice
	var nodes []zone.Change
	for _, f := range sortedKeys(m.files) {
		for _, c := range m.files[f].objects {
			switch c.Kind {
			case zone.ObjectService:
				svcs = append(svcs, c.Service)
			case zone.ObjectEndpointSlice:
				slices = append(slices, c.Slice)
			case zone.ObjectNode:
				nodes = append(nodes, c)
			}
		}
	}
	return svcs, slices, nodes
}
