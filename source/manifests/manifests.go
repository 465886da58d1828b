// Package manifests is the zone's source of Kubernetes YAML or JSON
// manifests on disk: it polls the files and hands the zone the changes of
// their Services, EndpointSlices and Nodes. It owns the files' bookkeeping: which
// file holds which object, what each held at its last good parse, and which
// are broken. Parsing one file's contents is package zone's
// (zone.ParseManifest), which shrinks to the same objects the Kubernetes
// source gives.
//
// It must not import server/ or policy/; zone must not import it.
package manifests

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hdns-dev/hdns/zone"
)

// Source reads Services, EndpointSlices and Nodes from Kubernetes YAML or
// JSON manifests on disk: one file or every *.yaml, *.yml and *.json file
// below a directory, with multi-document files and List kinds. Other kinds
// (Pods, Namespaces...) are skipped. Nodes reach the sink by Apply, before
// the first Replace, which does not carry them.
//
// Run polls the files. A file is read again when its size or modification
// time changed (an editor that replaces it changes both), and parsed again
// only when its contents did; the zone is handed the difference between the
// objects it held and holds. A file that fails to parse, or defines an
// object another file holds, is reported with the file and line and keeps
// its last good objects; a file that is gone takes its objects with it.
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
	stamps map[string]stamp          // every file listed, as last read
	files  map[string]*file          // every file with a good parse
	owner  map[zone.ObjectKey]string // the file holding each object
	broken map[string]string         // file → error of its last read, while it has one
	synced bool                      // the sink had the first complete view

	parses atomic.Int64 // files parsed, for tests
}

// Load reads every manifest now and hands sink what they hold. It returns
// the errors of the files that failed, naming each file, the document's
// first line and the object; sink then has nothing, and a later poll that
// leaves no file broken hands it the complete view.
func (m *Source) Load(sink zone.Sink) error {
	errs, err := m.poll(sink)
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// poll reads what changed since the last poll and hands sink the changes;
// errs are those of files that failed in this poll. err is set when the
// files could not be listed; nothing changed then.
func (m *Source) poll(sink zone.Sink) (errs []error, err error) {
	stamps, err := m.scan()
	if err != nil {
		return nil, err
	}
	if m.stamps == nil {
		m.stamps = make(map[string]stamp)
		m.files = make(map[string]*file)
		m.owner = make(map[zone.ObjectKey]string)
		m.broken = make(map[string]string)
	}
	next := make(map[string]*file)
	for f := range m.stamps {
		if _, ok := stamps[f]; !ok {
			next[f] = nil // gone
			delete(m.stamps, f)
			delete(m.broken, f)
		}
	}
	for _, f := range sortedKeys(stamps) {
		if st, ok := m.stamps[f]; ok && st == stamps[f] {
			continue
		}
		m.stamps[f] = stamps[f]
		parsed, err := m.read(f, m.files[f])
		switch {
		case err != nil:
			errs = append(errs, m.fail(f, err))
		case parsed != nil:
			next[f] = parsed
		default:
			delete(m.broken, f) // back to the contents last parsed
		}
	}
	for {
		f, err := m.reject(next)
		if f == "" {
			break
		}
		delete(next, f)
		// Read again next poll: the file it collides with may change.
		delete(m.stamps, f)
		errs = append(errs, m.fail(f, err))
	}
	for f := range next {
		delete(m.broken, f)
	}
	m.hand(sink, m.accept(next))
	return errs, nil
}

// fail records that f is broken by err and returns err.
func (m *Source) fail(f string, err error) error {
	m.broken[f] = err.Error()
	return err
}

// hand gives sink the changes, or the complete view once no file is broken
// if it has had none yet.
func (m *Source) hand(sink zone.Sink, changes []zone.Change) {
	switch {
	case !m.synced && len(m.broken) == 0:
		m.synced = true
		svcs, slices, nodes := m.all()
		if len(nodes) > 0 {
			sink.Apply(nodes...)
		}
		sink.Replace(svcs, slices)
	case m.synced && len(changes) > 0:
		sink.Apply(changes...)
	}
	if m.Metrics != nil && len(m.broken) == 0 {
		m.Metrics.SourceUp.Set(1)
	}
}

// Run polls the manifests until ctx is done and hands sink the changes.
// Each failure is logged and counted once, not at every poll.
func (m *Source) Run(ctx context.Context, sink zone.Sink) {
	interval := m.Interval
	if interval == 0 {
		interval = 250 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	reported := make(map[string]bool)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		parses := m.parses.Load()
		errs, err := m.poll(sink)
		if err != nil {
			errs = []error{err}
		}
		m.report(errs, reported)
		if n := m.parses.Load() - parses; n > 0 && len(errs) == 0 && m.Log != nil {
			m.Log.Info("manifests reloaded", "path", m.Path, "files", n)
		}
	}
}

// report logs and counts the errors not reported yet. reported holds the
// errors of the polls since the last that had none: a failure that
// persists (an unreadable directory, a file colliding with another, which
// is read again each poll) is reported once.
func (m *Source) report(errs []error, reported map[string]bool) {
	if len(errs) == 0 {
		clear(reported)
		return
	}
	if m.Metrics != nil {
		m.Metrics.SourceUp.Set(0)
	}
	for _, err := range errs {
		if reported[err.Error()] {
			continue
		}
		reported[err.Error()] = true
		if m.Log != nil {
			m.Log.Error("manifests rejected; serving the last good zone", "err", err)
		}
		if m.Metrics != nil {
			m.Metrics.SourceErrors.WithLabelValues("manifests").Inc()
		}
	}
}
