package manifests

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// stamp is what a poll compares to tell that a file may have changed: a
// file is read again when its size or modification time moved, and parsed
// again only when its contents did.
type stamp struct {
	size  int64
	mtime int64 // nanoseconds
}

// scan lists the manifest files below m.Path with their stamps. The stamps
// follow links, so a ConfigMap volume's swap of its data directory shows
// as new stamps of the files linked through it.
func (m *Source) scan() (map[string]stamp, error) {
	st, err := os.Stat(m.Path)
	if err != nil {
		return nil, fmt.Errorf("manifests: %w", err)
	}
	var files []string
	if !st.IsDir() {
		files = []string{m.Path}
	} else {
		err = filepath.WalkDir(m.Path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// Hidden entries are skipped: a ConfigMap volume keeps its files
			// in "..<timestamp>/" and links to them, which would load every
			// manifest twice.
			if p != m.Path && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			switch strings.ToLower(filepath.Ext(p)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					files = append(files, p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("manifests: %w", err)
		}
	}
	stamps := make(map[string]stamp, len(files))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("manifests: %w", err)
		}
		stamps[f] = stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	}
	return stamps, nil
}

// sortedKeys returns m's keys in order, so that files are read, and their
// errors reported, in the order of their names.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
