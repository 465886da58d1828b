//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hdns-dev/hdns/internal/fixture"
)

// Manifest edit: hdns serving a --manifests directory of one file per
// headless Service of 100 endpoints (200k endpoints: 2,000 files); one
// Service's file is replaced as an editor saves it (a new file renamed
// over the old) with one endpoint's Ready condition turned over, and the
// test times the write until hdns answers the endpoint's own name
// accordingly. No control plane: CoreDNS has no counterpart.

// manifestSizes makes every Service 100 endpoints, 20 per namespace.
var manifestSizes = slices.Repeat([]int{100}, 20)

const (
	// editTimeout bounds one edit's wait for the changed answer.
	editTimeout = 60 * time.Second
	// editPause separates two edits, beyond the changed answer: more than
	// hdns's manifests poll interval (250 ms), so each edit is a poll of
	// its own.
	editPause = 500 * time.Millisecond
)

// manifestFile renders s as the manifest file of its Service and its
// EndpointSlices, with the endpoints named in unready not ready.
func manifestFile(t testing.TB, s service, unready map[int]bool) string {
	t.Helper()
	svc := headlessService(s)
	svc.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
	objs := []runtime.Object{svc}
	for i := 0; i < len(s.eps); i += sliceSize {
		sl := endpointSlice(s, i/sliceSize, s.eps[i:min(i+sliceSize, len(s.eps))])
		sl.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"}
		for j := range sl.Endpoints {
			if unready[i+j] {
				sl.Endpoints[j].Conditions.Ready, sl.Endpoints[j].Conditions.Serving = new(false), new(false)
			}
		}
		objs = append(objs, sl)
	}
	return fixture.YAML(t, objs...)
}

// manifestPath is the file of s in dir.
func manifestPath(dir string, s service) string {
	return filepath.Join(dir, s.ns+"-"+s.name+".yaml")
}

// writeManifests writes one file per Service of svcs into dir, on two
// goroutines.
func writeManifests(t testing.TB, dir string, svcs []service) {
	t.Helper()
	var jobs []func() error
	for _, s := range svcs {
		jobs = append(jobs, func() error {
			return os.WriteFile(manifestPath(dir, s), []byte(manifestFile(t, s, nil)), 0o644)
		})
	}
	if err := parallel(2, jobs); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes data to path as an editor saves: a new file in the
// same directory, renamed over the old one. The temporary name does not
// end in .yaml, so no poll reads it half written.
func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func TestManifestEdit(t *testing.T) {
	smoke := loadConfig(t).smoke
	total, edits := 200000, 20
	if smoke {
		total, edits = 2000, 3
	}
	total = envInts(t, ManifestEndpointsEnv, []int{total})[0]
	edits = envInts(t, ManifestEditsEnv, []int{edits})[0]
	dir := t.TempDir()
	svcs := sizedFixture(manifestSizes, total)
	begin := time.Now()
	writeManifests(t, dir, svcs)
	written := time.Since(begin)

	hdnsBinary(t) // built before the clock starts
	begin = time.Now()
	h := startHDNS(t, "", "", "--manifests", dir)
	waitReady(t, h, func(addr string) error {
		for _, s := range []service{svcs[0], svcs[len(svcs)-1]} {
			if err := expect(addr, s.fqdn(), dns.TypeA, true, dns.RcodeSuccess, len(s.eps)); err != nil {
				return err
			}
		}
		return nil
	})
	ready := time.Since(begin)
	t.Logf("%d endpoints in %d files written in %v; hdns ready in %v", total, len(svcs), written.Round(time.Millisecond), ready.Round(time.Millisecond))

	servers := []*churnServer{{server: h, metrics: "http://" + h.http + "/metrics"}}
	meter := startMeter(servers)
	var took []time.Duration
	missed := 0
	unready := map[string]bool{}
	for i := range edits {
		s := svcs[(i*7919+len(svcs)/2)%len(svcs)]
		path := manifestPath(dir, s)
		unready[path] = !unready[path]
		data := []byte(manifestFile(t, s, map[int]bool{0: unready[path]}))
		name := endpointName(s.eps[0].ip.String(), s.name, s.ns)
		begin := time.Now()
		if err := replaceFile(path, data); err != nil {
			t.Fatal(err)
		}
		d := awaitPresence(servers, name, !unready[path], begin, editTimeout)[0]
		if d == 0 {
			missed++
		} else {
			took = append(took, d)
		}
		time.Sleep(editPause)
	}
	u := meter.stop()["hdns"]
	report(t, manifestReport(t, manifestRun{endpoints: total, files: len(svcs), written: written, ready: ready, took: took, missed: missed, u: u}))
}

// manifestRun is what TestManifestEdit measured.
type manifestRun struct {
	endpoints, files int
	written, ready   time.Duration
	took             []time.Duration
	missed           int
	u                usage
}

func manifestReport(t testing.TB, r manifestRun) string {
	var b strings.Builder
	edits := len(r.took) + r.missed
	fmt.Fprintf(&b, "### Manifest edit\n\n")
	fmt.Fprintf(&b, "%s. hdns --manifests on a directory of %d files, one per headless Service of %d endpoints (%d per namespace), each with its EndpointSlice; endpoints shaped as in Memory. %d edits, each replacing one Service's file (a new file renamed over it) with one endpoint's Ready condition turned over, %v apart; time from the write until hdns, polled every %v over UDP, answers the endpoint's own name accordingly. hdns polls the files every 250 ms, so up to 250 ms of each figure is the poll's wait. CPU, builds and RSS over the edits' window.\n\n",
		machine(), r.files, manifestSizes[0], len(manifestSizes), edits, editPause, propPoll)
	b.WriteString("| endpoints | files | written in (s) | hdns ready (s) | edits | edit → answer p50 / max (ms) | missed (> 60 s) | zone builds, mean (ms) | hdns CPU per edit (ms) | RSS end / max (MiB) | peak (MiB) |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---|---:|---|---:|---|---:|\n")
	fmt.Fprintf(&b, "| %d | %d | %.1f | %.1f | %d | %.0f / %.0f | %d | %d, %.1f | %.0f | %.1f / %.1f | %.1f |\n",
		r.endpoints, r.files, r.written.Seconds(), r.ready.Seconds(), edits, ms(percentile(r.took, 50)), ms(percentile(r.took, 100)), r.missed,
		r.u.builds, 1000*r.u.buildSeconds/float64(max(1, r.u.builds)), ms(r.u.cpu)/float64(max(1, edits)), mib(r.u.rss), mib(r.u.rssMax), mib(r.u.peak))
	fmt.Fprintf(&b, "\nTarget: a one-file edit among 2,000 files and 200k endpoints visible in ≤ 1 s. Versions: %s.\n", versions(t, false))
	return b.String()
}
