// Command podlb-image packs podlb-controller binaries, already built per
// platform, into a multi-platform OCI image-layout archive without pulling
// a base image. `make image` cross-compiles the binaries and runs it.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/podlb/podlb/internal/ociimage"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "podlb-image:", err)
		os.Exit(1)
	}
}

// binaryFlags collects repeated --binary os/arch=path values.
type binaryFlags []ociimage.Binary

func (b *binaryFlags) String() string {
	parts := make([]string, len(*b))
	for i, x := range *b {
		parts[i] = x.Platform.String() + "=" + x.Path
	}
	return strings.Join(parts, ",")
}

func (b *binaryFlags) Set(s string) error {
	platform, path, ok := strings.Cut(s, "=")
	if !ok || path == "" {
		return fmt.Errorf("want os/arch=path, got %q", s)
	}
	p, err := ociimage.ParsePlatform(platform)
	if err != nil {
		return err
	}
	*b = append(*b, ociimage.Binary{Platform: p, Path: path})
	return nil
}

func run(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("podlb-image", flag.ContinueOnError)
	var (
		binaries binaryFlags
		spec     ociimage.Spec
		epoch    string
		name     string
		out      string
	)
	fs.Var(&binaries, "binary", "os/arch=path of a static podlb-controller for that platform (repeat per platform)")
	fs.StringVar(&spec.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied into the image")
	fs.StringVar(&spec.Source, "source", "https://github.com/podlb/podlb", "org.opencontainers.image.source label")
	fs.StringVar(&spec.Version, "version", "", "org.opencontainers.image.version label and default tag (required)")
	fs.StringVar(&spec.Revision, "revision", "", "org.opencontainers.image.revision label: the commit built")
	fs.StringVar(&epoch, "created", getenv("SOURCE_DATE_EPOCH"), "creation time in Unix seconds, used for every timestamp; $SOURCE_DATE_EPOCH sets the default (required)")
	fs.StringVar(&name, "name", "", "reference the archive's index is named by (default podlb-controller:VERSION)")
	fs.StringVar(&out, "out", "bin/podlb-image.oci.tar", "archive to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if epoch == "" {
		return fmt.Errorf("--created: required (or $SOURCE_DATE_EPOCH)")
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("--created: %q is not a Unix time in seconds", epoch)
	}
	spec.Created = time.Unix(secs, 0).UTC()
	spec.Binaries = binaries
	if name == "" {
		name = "podlb-controller:" + spec.Version
	}

	idx, err := ociimage.Build(spec)
	if err != nil {
		return err
	}
	if err := ociimage.WriteArchive(idx, name, out, spec.Created); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %s %s\n", out, name, digest)
	for _, m := range im.Manifests {
		fmt.Fprintf(stdout, "  %s %s\n", m.Platform.String(), m.Digest)
	}
	return nil
}
