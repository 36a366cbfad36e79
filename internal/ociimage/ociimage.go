// Package ociimage assembles podlb-controller's container image without a
// base image or a container runtime: a static binary, the CA bundle and a
// passwd entry for the non-root user, written as an OCI image-layout
// archive whose index holds one manifest per platform.
//
// Every timestamp in the output is the given creation time and every file
// is owned by a fixed user, so the same inputs give the same digest.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths and identity inside the image; the Deployment in manifests/base
// runs as the same user.
const (
	Entrypoint  = "/podlb-controller"
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	UID         = 65532
	User        = "65532:65532"
)

// OCI annotation keys carried as config labels.
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
)

// Binary is the controller built for one platform.
type Binary struct {
	Platform v1.Platform
	Path     string
}

// Spec is everything an image build reads.
type Spec struct {
	Binaries []Binary
	// CACerts is the CA bundle file copied to CACertsPath.
	CACerts  string
	Source   string
	Version  string
	Revision string
	// Created stamps the config, the history and every file.
	Created time.Time
}

func (s Spec) validate() error {
	if len(s.Binaries) == 0 {
		return fmt.Errorf("binaries: at least one platform is needed")
	}
	seen := map[string]bool{}
	for _, b := range s.Binaries {
		p := b.Platform.String()
		if b.Platform.OS == "" || b.Platform.Architecture == "" {
			return fmt.Errorf("binaries: platform %q needs an OS and an architecture", p)
		}
		if seen[p] {
			return fmt.Errorf("binaries: platform %s given twice", p)
		}
		seen[p] = true
		if b.Path == "" {
			return fmt.Errorf("binaries: platform %s has no binary path", p)
		}
	}
	if s.CACerts == "" {
		return fmt.Errorf("ca-certs: a CA bundle file is needed")
	}
	if s.Version == "" {
		return fmt.Errorf("version: must not be empty")
	}
	if s.Created.IsZero() {
		return fmt.Errorf("created: a fixed creation time is needed for a reproducible image")
	}
	return nil
}

// ParsePlatform reads "os/arch" or "os/arch/variant".
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch or os/arch/variant", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// Build returns the multi-platform index. Layers are built in memory: the
// binary is tens of megabytes, small enough to hold.
func Build(s Spec) (v1.ImageIndex, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	created := s.Created.UTC()
	base, err := baseLayer(s.CACerts, created)
	if err != nil {
		return nil, err
	}
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, b := range s.Binaries {
		img, err := platformImage(s, b, base, created)
		if err != nil {
			return nil, fmt.Errorf("platform %s: %w", b.Platform.String(), err)
		}
		platform := b.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &platform},
		})
	}
	return idx, nil
}

func platformImage(s Spec, b Binary, base v1.Layer, created time.Time) (v1.Image, error) {
	bin, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	app, err := layer([]entry{{name: strings.TrimPrefix(Entrypoint, "/"), mode: 0o755, data: bin}}, created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	stamp := v1.Time{Time: created}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: stamp, CreatedBy: "podlb-image: CA bundle, passwd and group for nonroot", Comment: "base"}},
		mutate.Addendum{Layer: app, History: v1.History{Created: stamp, CreatedBy: "podlb-image: podlb-controller " + s.Version}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = stamp
	cf.OS = b.Platform.OS
	cf.Architecture = b.Platform.Architecture
	cf.Variant = b.Platform.Variant
	cf.Author = ""
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{Entrypoint},
		WorkingDir: "/",
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"SSL_CERT_FILE=" + CACertsPath,
		},
		Labels: labels(s, created),
	}
	return mutate.ConfigFile(img, cf)
}

func labels(s Spec, created time.Time) map[string]string {
	l := map[string]string{
		LabelTitle:   "podlb-controller",
		LabelVersion: s.Version,
		LabelCreated: created.Format(time.RFC3339),
	}
	if s.Source != "" {
		l[LabelSource] = s.Source
	}
	if s.Revision != "" {
		l[LabelRevision] = s.Revision
	}
	return l
}

// baseLayer holds what every platform shares; its digest changes only with
// the CA bundle or the creation time.
func baseLayer(caCerts string, created time.Time) (v1.Layer, error) {
	ca, err := os.ReadFile(caCerts)
	if err != nil {
		return nil, fmt.Errorf("ca-certs: %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("ca-certs: %s holds no PEM certificate", caCerts)
	}
	// No login shell exists in the image, so the accounts name none.
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, UID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", UID)
	return layer([]entry{
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: strings.TrimPrefix(CACertsPath, "/"), mode: 0o644, data: ca},
		{name: "home/nonroot", dir: true, mode: 0o700, owner: UID},
	}, created)
}

type entry struct {
	name  string
	dir   bool
	mode  int64
	owner int
	data  []byte
}

// layer writes the entries, and every parent directory they need, as a tar
// in name order with fixed times and owners.
func layer(entries []entry, created time.Time) (v1.Layer, error) {
	all := map[string]entry{}
	for _, e := range entries {
		all[e.name] = e
		for d := path.Dir(e.name); d != "."; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = entry{name: d, dir: true, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := all[n]
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.owner,
			Gid:     e.owner,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
