package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Media types of the OCI image specification (v1.1).
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// The container every image runs: the binary at the root of the file
// system, as the distroless "nonroot" user. A static Go binary needs no
// other file to run as a numeric user.
const (
	binaryName = "hdns"
	entrypoint = "/" + binaryName
	imageUser  = "65532:65532"
)

// imageSpec is what an archive is made from.
type imageSpec struct {
	Name     string // repository, without tag
	Version  string // the tag and org.opencontainers.image.version
	Revision string
	Source   string
	Created  time.Time
	Binaries []platformBinary
}

type platformBinary struct {
	OS, Arch, Path string
}

// descriptor, platform, manifest, index and imageConfig are the JSON
// documents of the OCI image specification, restricted to the fields this
// image sets.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Manifests     []descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type imageConfig struct {
	Created      string          `json:"created"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
	History      []history       `json:"history"`
}

type containerConfig struct {
	User       string            `json:"User"`
	Entrypoint []string          `json:"Entrypoint"`
	Labels     map[string]string `json:"Labels"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

// blobs holds the layout's content-addressed files by digest.
type blobs map[string][]byte

// add stores data and returns its descriptor.
func (b blobs) add(mediaType string, data []byte) descriptor {
	sum := sha256.Sum256(data)
	d := descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}
	b[d.Digest] = data
	return d
}

// addJSON stores v encoded as JSON.
func (b blobs) addJSON(mediaType string, v any) (descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return descriptor{}, err
	}
	return b.add(mediaType, data), nil
}

// labels are the image's OCI annotations, set both as the config's labels
// (what `docker inspect` and Kubernetes tooling show) and as annotations of
// the index and manifests (what registries show).
func (s imageSpec) labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    binaryName,
		"org.opencontainers.image.source":   s.Source,
		"org.opencontainers.image.version":  s.Version,
		"org.opencontainers.image.revision": s.Revision,
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.created":  s.Created.Format(time.RFC3339),
	}
}

// writeArchive writes the layout of spec's images to w as a tar. index.json
// names one image index, tagged with the version, which names one manifest
// per platform: the shape `skopeo copy --all oci-archive:…` and
// `docker buildx --output type=oci` use.
func writeArchive(w io.Writer, spec imageSpec) error {
	bins := slices.Clone(spec.Binaries)
	slices.SortFunc(bins, func(a, b platformBinary) int {
		return strings.Compare(a.OS+"/"+a.Arch, b.OS+"/"+b.Arch)
	})
	store := blobs{}
	imgIndex := index{SchemaVersion: 2, MediaType: mediaTypeIndex, Annotations: spec.labels()}
	for _, bin := range bins {
		d, err := addImage(store, spec, bin)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", bin.OS, bin.Arch, err)
		}
		imgIndex.Manifests = append(imgIndex.Manifests, d)
	}
	top, err := store.addJSON(mediaTypeIndex, imgIndex)
	if err != nil {
		return err
	}
	top.Annotations = map[string]string{
		"org.opencontainers.image.ref.name": spec.Version,
		"io.containerd.image.name":          spec.Name + ":" + spec.Version,
	}
	layoutIndex, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaTypeIndex, Manifests: []descriptor{top}})
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": layoutIndex,
	}
	for digest, data := range store {
		files["blobs/sha256/"+digest[len("sha256:"):]] = data
	}
	return writeTar(w, spec.Created, []string{"blobs/", "blobs/sha256/"}, files)
}

// addImage stores one platform's layer, config and manifest, and returns
// the manifest's descriptor.
func addImage(store blobs, spec imageSpec, bin platformBinary) (descriptor, error) {
	exe, err := os.ReadFile(bin.Path)
	if err != nil {
		return descriptor{}, err
	}
	var layerTar bytes.Buffer
	if err := writeTar(&layerTar, spec.Created, nil, map[string][]byte{binaryName: exe}); err != nil {
		return descriptor{}, err
	}
	diffID := sha256.Sum256(layerTar.Bytes())
	var layerGz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&layerGz, gzip.BestCompression)
	if err != nil {
		return descriptor{}, err
	}
	// gzip.Writer leaves the header's name empty and its time zero.
	if _, err := zw.Write(layerTar.Bytes()); err != nil {
		return descriptor{}, err
	}
	if err := zw.Close(); err != nil {
		return descriptor{}, err
	}
	layer := store.add(mediaTypeLayer, layerGz.Bytes())
	created := spec.Created.Format(time.RFC3339)
	config, err := store.addJSON(mediaTypeConfig, imageConfig{
		Created:      created,
		Architecture: bin.Arch,
		OS:           bin.OS,
		Config:       containerConfig{User: imageUser, Entrypoint: []string{entrypoint}, Labels: spec.labels()},
		RootFS:       rootFS{Type: "layers", DiffIDs: []string{"sha256:" + hex.EncodeToString(diffID[:])}},
		History:      []history{{Created: created, CreatedBy: "scripts/image"}},
	})
	if err != nil {
		return descriptor{}, err
	}
	d, err := store.addJSON(mediaTypeManifest, manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        config,
		Layers:        []descriptor{layer},
		Annotations:   spec.labels(),
	})
	d.Platform = &platform{Architecture: bin.Arch, OS: bin.OS}
	return d, err
}

// writeTar writes dirs and files to w in name order, every entry owned by
// 0:0 with time mtime; files are executable only when named binaryName.
// Names must fit ustar (100 bytes), which keeps PAX records, and with them
// access and change times, out of the archive.
func writeTar(w io.Writer, mtime time.Time, dirs []string, files map[string][]byte) error {
	names := slices.Sorted(maps.Keys(files))
	names = append(names, dirs...)
	slices.Sort(names)
	tw := tar.NewWriter(w)
	for _, name := range names {
		hdr := &tar.Header{Name: name, ModTime: mtime, Format: tar.FormatUSTAR}
		data, isFile := files[name]
		switch {
		case !isFile:
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		case name == binaryName:
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o755, int64(len(data))
		default:
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}
