package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requireSkopeoEnv, when set (scripts/test sets it), makes a missing skopeo
// fail the test instead of skipping its check.
const requireSkopeoEnv = "HDNS_REQUIRE_SKOPEO"

// release is what scripts/image must put into the image, read from the
// repository the way a reader would.
type release struct {
	name, version string
	revision      string // HEAD, "-dirty" when the tree has changes
	created       time.Time
}

func TestScriptsImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hdns for two platforms")
	}
	root := repoRoot(t)
	want := readRelease(t, root)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.tar"), filepath.Join(dir, "second.tar")
	archive := buildImage(t, root, first)
	if again := buildImage(t, root, second); !bytes.Equal(archive, again) {
		t.Fatal("two builds of the same tree differ: the archive is not reproducible")
	}
	files := readTar(t, archive, want.created, map[string]bool{"blobs/": true, "blobs/sha256/": true})
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", got)
	}
	var layoutIndex index
	decode(t, files["index.json"], &layoutIndex)
	if len(layoutIndex.Manifests) != 1 || layoutIndex.Manifests[0].MediaType != mediaTypeIndex {
		t.Fatalf("index.json names %+v, want one image index", layoutIndex.Manifests)
	}
	top := layoutIndex.Manifests[0]
	if ref := top.Annotations["org.opencontainers.image.ref.name"]; ref != want.version {
		t.Errorf("index.json tags the image %q, want %q", ref, want.version)
	}
	var imgIndex index
	decode(t, blob(t, files, top), &imgIndex)
	checkLabels(t, "the image index's annotations", imgIndex.Annotations, want)
	var platforms []string
	for _, d := range imgIndex.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
		t.Run(d.Platform.Architecture, func(t *testing.T) {
			exe := checkImage(t, files, d, want)
			checkStatic(t, exe, d.Platform.Architecture)
			checkBuildSettings(t, exe, d.Platform.Architecture, want)
			if d.Platform.Architecture == runtime.GOARCH && runtime.GOOS == "linux" {
				checkRuns(t, exe, want)
			}
		})
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", platforms)
	}
	checkSkopeo(t, first, want)
}

func TestDeployNamesTheImage(t *testing.T) {
	root := repoRoot(t)
	want := readRelease(t, root)
	ref := want.name + ":" + want.version
	deployment, err := os.ReadFile(filepath.Join(root, "deploy", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, line := range strings.Split(string(deployment), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "image:"); ok {
			images = append(images, strings.TrimSpace(v))
		}
	}
	if !slices.Equal(images, []string{ref}) {
		t.Errorf("deploy/deployment.yaml names images %v, want [%s] (IMAGE:v<VERSION>)", images, ref)
	}
	readme, err := os.ReadFile(filepath.Join(root, "deploy", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), ref) {
		t.Errorf("deploy/README.md does not name %s", ref)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func readRelease(t *testing.T, root string) release {
	t.Helper()
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("git %s: %v (the image is built from a git checkout)", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	r := release{name: read("IMAGE"), version: "v" + read("VERSION"), revision: git("rev-parse", "HEAD")}
	if git("status", "--porcelain") != "" {
		r.revision += "-dirty"
	}
	secs, err := strconv.ParseInt(git("log", "-1", "--format=%ct", "HEAD"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	r.created = time.Unix(secs, 0).UTC()
	return r
}

// buildImage runs scripts/image out, as a release would (no
// SOURCE_DATE_EPOCH), and returns the archive.
func buildImage(t *testing.T, root, out string) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, "scripts", "image"), out)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "SOURCE_DATE_EPOCH=") })
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image: %v\n%s", err, output)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readTar returns the regular files of a tar, checking that its entries
// are sorted, owned by 0:0, dated mtime, and that the directories are
// exactly dirs.
func readTar(t *testing.T, data []byte, mtime time.Time, dirs map[string]bool) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" || !hdr.ModTime.Equal(mtime) || len(hdr.PAXRecords) > 0 {
			t.Errorf("%s: owner %d:%d (%q:%q), time %v, PAX %v; want 0:0, %v, none",
				hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.ModTime, hdr.PAXRecords, mtime)
		}
		if hdr.Typeflag == tar.TypeDir {
			if !dirs[hdr.Name] {
				t.Errorf("unexpected directory %s", hdr.Name)
			}
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			t.Fatalf("%s: type %c, want a regular file", hdr.Name, hdr.Typeflag)
		}
		if files[hdr.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not sorted: %v", names)
	}
	return files
}

// blob returns the layout's blob d names, checking its digest and size.
func blob(t *testing.T, files map[string][]byte, d descriptor) []byte {
	t.Helper()
	hexDigest, ok := strings.CutPrefix(d.Digest, "sha256:")
	data, found := files["blobs/sha256/"+hexDigest]
	if !ok || !found {
		t.Fatalf("no blob %s", d.Digest)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != hexDigest || int64(len(data)) != d.Size {
		t.Fatalf("blob %s: digest %x, size %d; descriptor says size %d", d.Digest, sum, len(data), d.Size)
	}
	return data
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
}

func checkLabels(t *testing.T, what string, got map[string]string, want release) {
	t.Helper()
	for key, value := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/hdns-dev/hdns",
		"org.opencontainers.image.version":  want.version,
		"org.opencontainers.image.revision": want.revision,
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.created":  want.created.Format(time.RFC3339),
	} {
		if got[key] != value {
			t.Errorf("%s: %s = %q, want %q", what, key, got[key], value)
		}
	}
}

// checkImage checks one platform's manifest, config and layer, and returns
// the binary the layer holds.
func checkImage(t *testing.T, files map[string][]byte, d descriptor, want release) []byte {
	var m manifest
	decode(t, blob(t, files, d), &m)
	if m.SchemaVersion != 2 || m.MediaType != mediaTypeManifest || m.Config.MediaType != mediaTypeConfig ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != mediaTypeLayer {
		t.Fatalf("manifest %+v: want an OCI manifest of one gzip layer", m)
	}
	var cfg imageConfig
	decode(t, blob(t, files, m.Config), &cfg)
	if cfg.OS != d.Platform.OS || cfg.Architecture != d.Platform.Architecture || cfg.Created != want.created.Format(time.RFC3339) {
		t.Errorf("config is for %s/%s created %s; the index says %s/%s, the commit %v",
			cfg.OS, cfg.Architecture, cfg.Created, d.Platform.OS, d.Platform.Architecture, want.created)
	}
	if cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/hdns"}) {
		t.Errorf("runs %v as %q, want [/hdns] as 65532:65532", cfg.Config.Entrypoint, cfg.Config.User)
	}
	checkLabels(t, "config labels", cfg.Config.Labels, want)
	gz := blob(t, files, m.Layers[0])
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("layer's gzip header names %q, time %v; want neither", zr.Name, zr.ModTime)
	}
	layerTar, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(layerTar); !slices.Equal(cfg.RootFS.DiffIDs, []string{"sha256:" + hex.EncodeToString(sum[:])}) {
		t.Errorf("diff_ids %v, layer's uncompressed digest %x", cfg.RootFS.DiffIDs, sum)
	}
	layer := readTar(t, layerTar, want.created, nil)
	if names := slices.Sorted(maps.Keys(layer)); !slices.Equal(names, []string{"hdns"}) {
		t.Fatalf("layer holds %v, want only hdns", names)
	}
	return layer["hdns"]
}

// checkStatic checks that exe is a statically linked ELF for arch.
func checkStatic(t *testing.T, exe []byte, arch string) {
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]; f.Machine != machine {
		t.Errorf("binary is for %v, want %v", f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary is dynamically linked (%v)", p.Type)
		}
	}
}

// checkBuildSettings checks what the Go toolchain recorded of the build
// (a static, path-free cross build of cmd/hdns) and that the binary holds
// the version and commit the linker set in internal/buildinfo (with
// -trimpath, Go does not record -ldflags).
func checkBuildSettings(t *testing.T, exe []byte, arch string, want release) {
	bi, err := buildinfo.Read(bytes.NewReader(exe))
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if bi.Path != "github.com/hdns-dev/hdns/cmd/hdns" || settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" ||
		settings["GOOS"] != "linux" || settings["GOARCH"] != arch {
		t.Errorf("built %s with %v; want cmd/hdns for linux/%s, CGO_ENABLED=0, -trimpath", bi.Path, settings, arch)
	}
	for _, s := range []string{want.version, want.revision} {
		if !bytes.Contains(exe, []byte(s)) {
			t.Errorf("the binary does not hold %q", s)
		}
	}
}

// checkRuns runs the binary from the layer, as the image would, and
// checks that it names the release it was built as.
func checkRuns(t *testing.T, exe []byte, want release) {
	path := filepath.Join(t.TempDir(), "hdns")
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		t.Fatalf("hdns --version: %v\n%s", err, out)
	}
	if prefix := "hdns " + want.version + " (commit " + want.revision + ", go"; !strings.HasPrefix(string(out), prefix) {
		t.Errorf("hdns --version printed %q, want it to start with %q", out, prefix)
	}
}

// checkSkopeo reads the archive with skopeo, an implementation of the
// image specifications other than this package's: it must copy every
// platform (verifying each blob's digest) and see each one's config.
func checkSkopeo(t *testing.T, archive string, want release) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv(requireSkopeoEnv) != "" {
			t.Fatalf("skopeo is not installed (scripts/setup installs it) and %s is set", requireSkopeoEnv)
		}
		t.Log("skopeo is not installed; skipping its reading of the archive")
		return
	}
	copyDir := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command(skopeo, "--insecure-policy", "copy", "--quiet", "--all",
		"oci-archive:"+archive+":"+want.version, "oci:"+copyDir+":"+want.version).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy --all: %v\n%s", err, out)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		out, err := exec.Command(skopeo, "inspect", "--override-os", "linux", "--override-arch", arch,
			"oci-archive:"+archive+":"+want.version).Output()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v", arch, err)
		}
		var got struct {
			Architecture, Os string
			Labels           map[string]string
		}
		decode(t, out, &got)
		if got.Os != "linux" || got.Architecture != arch {
			t.Errorf("skopeo picked %s/%s for linux/%s", got.Os, got.Architecture, arch)
		}
		checkLabels(t, "skopeo's labels for "+arch, got.Labels, want)
	}
}
