// Package manifests is the zone's source of Kubernetes YAML or JSON
// manifests on disk: it polls the files and hands their Services and
// EndpointSlices to the zone. It owns the files' bookkeeping; parsing one
// file's contents is package zone's (zone.ParseManifest), which builds from
// the same objects the Kubernetes source gives.
//
// It must not import server/ or policy/; zone must not import it.
package manifests

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hdns-dev/hdns/zone"
)

type objects struct {
	services []*zone.Service
	slices   []*zone.EndpointSlice
}

// checkUnique rejects two objects of one kind with the same namespace and
// name, as the API server would.
func (o *objects) checkUnique() error {
	seen := make(map[string]bool, len(o.services)+len(o.slices))
	for _, s := range o.services {
		k := "Service " + s.Namespace + "/" + s.Name
		if seen[k] {
			return fmt.Errorf("manifests: %s is defined twice", k)
		}
		seen[k] = true
	}
	for _, s := range o.slices {
		k := "EndpointSlice " + s.Namespace + "/" + s.Name
		if seen[k] {
			return fmt.Errorf("manifests: %s is defined twice", k)
		}
		seen[k] = true
	}
	return nil
}

// Source reads Services and EndpointSlices from Kubernetes YAML or
// JSON manifests on disk: one file or every *.yaml, *.yml and *.json file
// below a directory, with multi-document files and List kinds. Other kinds
// (Pods, Namespaces...) are skipped.
//
// Run polls the files and reloads them when they change. A load that fails
// is reported and leaves the last good objects in place.
type Source struct {
	// Path is a manifest file or a directory of them.
	Path string
	// Interval between polls of the files' metadata; 0 means 250ms.
	Interval time.Duration
	// Log receives load errors; nil logs nowhere.
	Log *slog.Logger
	// Metrics counts load errors; nil counts nowhere.
	Metrics *zone.Metrics

	// Owned by the goroutine that calls Load and Run.
	stamp   string   // names, sizes and modification times last seen
	content [32]byte // hash of the contents last parsed
	loaded  bool     // a load succeeded
}

// Load reads every manifest now and hands sink what they hold (Replace). On
// error sink is left alone; the error names the file, the document's first
// line and the object.
func (m *Source) Load(sink zone.Sink) error {
	files, stamp, err := m.files()
	if err != nil {
		return err
	}
	m.stamp = stamp
	h := sha256.New()
	var objs objects
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("manifests: %w", err)
		}
		h.Write([]byte(f))
		h.Write(data)
		svcs, slices, err := zone.ParseManifest(f, data)
		if err != nil {
			return err
		}
		objs.services = append(objs.services, svcs...)
		objs.slices = append(objs.slices, slices...)
	}
	if err := objs.checkUnique(); err != nil {
		return err
	}
	sum := [32]byte(h.Sum(nil))
	if sum != m.content || !m.loaded {
		sink.Replace(objs.services, objs.slices)
	}
	m.content, m.loaded = sum, true
	if m.Metrics != nil {
		m.Metrics.SourceUp.Set(1)
	}
	return nil
}

// Run polls the manifests until ctx is done and hands sink what they hold
// after every load that changed it. Failed loads are logged and counted.
func (m *Source) Run(ctx context.Context, sink zone.Sink) {
	interval := m.Interval
	if interval == 0 {
		interval = 250 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, stamp, err := m.files()
		if err == nil && stamp == m.stamp {
			continue
		}
		before := m.content
		if err == nil {
			err = m.Load(sink)
		}
		if err != nil {
			if m.Metrics != nil {
				m.Metrics.SourceUp.Set(0)
			}
			// The same broken state is reported once, not every poll.
			if err.Error() != lastErr {
				lastErr = err.Error()
				if m.Log != nil {
					m.Log.Error("manifests rejected; serving the last good zone", "err", err)
				}
				if m.Metrics != nil {
					m.Metrics.SourceErrors.WithLabelValues("manifests").Inc()
				}
			}
			continue
		}
		lastErr = ""
		if m.content != before && m.Log != nil {
			m.Log.Info("manifests reloaded", "path", m.Path)
		}
	}
}

// files lists the manifest files and a stamp of their metadata.
func (m *Source) files() ([]string, string, error) {
	st, err := os.Stat(m.Path)
	if err != nil {
		return nil, "", fmt.Errorf("manifests: %w", err)
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
			return nil, "", fmt.Errorf("manifests: %w", err)
		}
		slices.Sort(files)
	}
	var stamp strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, "", fmt.Errorf("manifests: %w", err)
		}
		fmt.Fprintf(&stamp, "%s\x00%d\x00%d\n", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return files, stamp.String(), nil
}
