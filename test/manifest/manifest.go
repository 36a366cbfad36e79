// Package manifest turns podlb's installation sources, the kustomize
// overlays and the rendered Helm chart, into objects the tests can compare,
// convert and apply.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Kustomize builds a kustomization directory with the library kubectl -k
// uses.
func Kustomize(dir string) ([]*unstructured.Unstructured, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, so numbers are int64/float64 as API machinery
		// expects of unstructured objects.
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// Decode splits a multi-document YAML stream, as helm template prints it,
// into objects; empty documents (a template that rendered nothing) are
// skipped.
func Decode(stream []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stream), 4096)
	var out []*unstructured.Unstructured
	for {
		// Decoded as JSON, so numbers come out as int64/float64 the way
		// they do from the API server and from Kustomize.
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decoding manifest document %d: %w", len(out)+1, err)
		}
		if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("manifest document %d: %w", len(out)+1, err)
		}
		out = append(out, u)
	}
}

// WriteOverlay writes into dir a kustomization that builds on base and
// adds components, both given relative to manifestsDir, as the guide
// tells users to do, and returns dir.
func WriteOverlay(dir, manifestsDir, base string, components ...string) (string, error) {
	abs, err := filepath.Abs(manifestsDir)
	if err != nil {
		return "", err
	}
	// Kustomize wants relative paths to bases and components.
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\n", filepath.Join(rel, base))
	if len(components) > 0 {
		b.WriteString("components:\n")
		for _, c := range components {
			fmt.Fprintf(&b, "  - %s\n", filepath.Join(rel, c))
		}
	}
	return dir, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644)
}
