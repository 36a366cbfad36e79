package kubectlplugin

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The krew manifest offers the binary this package builds on the four
// platforms, each from its own archive.
func TestKrewManifestCoversLinuxAndDarwinOnAmd64AndArm64(t *testing.T) {
	raw, err := os.ReadFile("../../plugins/krew/podlb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Kind     string
		Metadata struct{ Name string }
		Spec     struct {
			Platforms []struct {
				Selector struct{ MatchLabels map[string]string }
				URI      string
				SHA256   string
				Bin      string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Kind != "Plugin" || m.Metadata.Name != "podlb" {
		t.Fatalf("kind %q name %q: not the krew plugin podlb", m.Kind, m.Metadata.Name)
	}
	seen := map[string]bool{}
	for _, p := range m.Spec.Platforms {
		key := p.Selector.MatchLabels["os"] + "_" + p.Selector.MatchLabels["arch"]
		seen[key] = true
		if p.Bin != "kubectl-podlb" || !strings.HasSuffix(p.URI, "/kubectl-podlb_"+key+".tar.gz") || len(p.SHA256) != 64 {
			t.Errorf("platform %s: bin %q uri %q sha256 %q", key, p.Bin, p.URI, p.SHA256)
		}
	}
	for _, want := range []string{"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64"} {
		if !seen[want] {
			t.Errorf("no platform %s", want)
		}
	}
	if len(m.Spec.Platforms) != 4 {
		t.Errorf("%d platforms, want 4", len(m.Spec.Platforms))
	}
}
