// Command ociimage writes hdns's container image as an OCI image archive: an
// OCI image layout (oci-layout, index.json, blobs/sha256/…) in a tar, whose
// image index names one image per platform. Each image is one layer holding
// only the static hdns binary, run as 65532:65532.
//
// scripts/image builds the binaries and runs it; ociimage owns the archive's
// format and nothing else. It imports only the standard library and no hdns
// package: the image describes hdns, it is not part of it.
//
// The archive is a function of its inputs alone: every timestamp is
// -created, tar entries are sorted with fixed owners and modes, and gzip
// streams carry no name or time, so the same binaries and flags give the
// same bytes.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	var spec imageSpec
	out := fs.String("o", "", "the archive to write")
	created := fs.String("created", "", "every timestamp of the image, in Unix seconds (the commit time)")
	fs.StringVar(&spec.Name, "name", "", "image repository, e.g. ghcr.io/hdns-dev/hdns")
	fs.StringVar(&spec.Version, "version", "", "release and tag, e.g. v0.1.0")
	fs.StringVar(&spec.Revision, "revision", "", "the commit the binaries were built from")
	fs.StringVar(&spec.Source, "source", "", "URL of the source repository")
	fs.Func("binary", "os/arch=path of a static hdns binary (repeat per platform)", func(v string) error {
		b, err := parseBinary(v)
		spec.Binaries = append(spec.Binaries, b)
		return err
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || spec.Name == "" || spec.Version == "" || spec.Revision == "" || spec.Source == "" || len(spec.Binaries) == 0 {
		return fmt.Errorf("-o, -name, -version, -revision, -source and at least one -binary are required")
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	spec.Created = time.Unix(secs, 0).UTC()
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := writeArchive(f, spec); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	return f.Close()
}

// parseBinary reads "linux/amd64=path".
func parseBinary(v string) (platformBinary, error) {
	plat, path, ok := strings.Cut(v, "=")
	osName, arch, ok2 := strings.Cut(plat, "/")
	if !ok || !ok2 || path == "" || osName == "" || arch == "" {
		return platformBinary{}, fmt.Errorf("want os/arch=path, got %s", v)
	}
	return platformBinary{OS: osName, Arch: arch, Path: path}, nil
}
