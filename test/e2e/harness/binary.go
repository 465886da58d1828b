package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// HDNS is the hdns command of this module.
const HDNS = "github.com/hdns-dev/hdns/cmd/hdns"

// Binary is a Go main package of this module that tests run as a process
// of its own (hdns, a test backend). It is built from the work tree at
// most once per test binary, on first use, into a temporary directory that
// Remove deletes; TestMain calls Remove after m.Run. The zero value builds
// nothing until Pkg is set. Safe for concurrent use.
type Binary struct {
	// Pkg is the main package's import path, e.g. HDNS.
	Pkg string
	// Tags are build tags, e.g. "e2e" for a helper behind that tag.
	Tags []string

	once sync.Once
	dir  string
	path string
	err  error
}

// Path returns the built binary, building it on first use; it fails t
// when the build fails (every later call fails the same way).
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		begin := time.Now()
		b.dir, b.err = os.MkdirTemp("", "hdns-test-bin-")
		if b.err != nil {
			return
		}
		out := filepath.Join(b.dir, path.Base(b.Pkg))
		args := []string{"build", "-o", out}
		if len(b.Tags) > 0 {
			args = append(args, "-tags", strings.Join(b.Tags, ","))
		}
		if msg, err := exec.Command("go", append(args, b.Pkg)...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", b.Pkg, err, msg)
			return
		}
		b.path = out
		t.Logf("built %s in %v", path.Base(b.Pkg), time.Since(begin).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Remove deletes the built binary, if any.
func (b *Binary) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
