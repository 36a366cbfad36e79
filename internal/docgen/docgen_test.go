package docgen

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/podlb/podlb/providers"
)

const guidePath = "../../docs/guide.md"

func TestCommittedGuideMatchesTheCode(t *testing.T) {
	raw, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Update(string(raw))
	if err != nil {
		t.Fatalf("docs/guide.md: %v", err)
	}
	if got == string(raw) {
		return
	}
	have, want := strings.Split(string(raw), "\n"), strings.Split(got, "\n")
	for i := range min(len(have), len(want)) {
		if have[i] != want[i] {
			t.Fatalf("docs/guide.md differs from what the code generates: run `make docs`.\nline %d is\n\t%s\nbut the code generates\n\t%s", i+1, have[i], want[i])
		}
	}
	t.Fatalf("docs/guide.md differs from what the code generates in length: run `make docs`")
}

// regions is a guide with every region, each holding content.
func regions(content string) string {
	var b strings.Builder
	b.WriteString("# Guide\n\n")
	for _, name := range []string{"flags", "aws-create-fields", "gcp-fields", "aws-load-balancer-fields", "gcp-load-balancer-fields"} {
		b.WriteString("Before " + name + ".\n<!-- BEGIN GENERATED " + name + " -->\n" + content + "<!-- END GENERATED " + name + " -->\nAfter.\n")
	}
	return b.String()
}

func TestUpdateRewritesOnlyTheRegions(t *testing.T) {
	got, err := Update(regions("| stale | table |\n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, "stale") {
		t.Errorf("stale content kept:\n%s", got)
	}
	for _, want := range []string{"Before flags.\n", "| `--cluster-name` |", "| `healthCheck.intervalSeconds` | AWS's default | 5–300 |",
		"| `capacityScaler` | left as is | 0 (no new traffic) or 0.1–1.0 |", "After.\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("generated guide lacks %q", want)
		}
	}
	again, err := Update(got)
	if err != nil || again != got {
		t.Errorf("a second run changed the guide (err %v)", err)
	}
}

func TestUpdateRejectsBrokenRegions(t *testing.T) {
	good := regions("")
	for name, guide := range map[string]string{
		"missing end":    strings.Replace(good, "<!-- END GENERATED flags -->\n", "", 1),
		"unknown region": good + "<!-- BEGIN GENERATED metrics -->\n<!-- END GENERATED metrics -->\n",
		"missing region": strings.Replace(strings.Replace(good, "<!-- BEGIN GENERATED gcp-fields -->\n", "", 1), "<!-- END GENERATED gcp-fields -->\n", "", 1),
		"twice":          good + "<!-- BEGIN GENERATED flags -->\n<!-- END GENERATED flags -->\n",
	} {
		if _, err := Update(guide); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFieldTableRejectsUndocumentedFields(t *testing.T) {
	type inner struct {
		Path string `json:"path,omitempty"`
	}
	type spec struct {
		Name  string `json:"name"`
		Check *inner `json:"check,omitempty"`
		cache string
	}
	docs := []providers.FieldDoc{{Field: "name"}, {Field: "check.path"}}
	if _, err := FieldTable(reflect.TypeFor[spec](), docs, "test"); err != nil {
		t.Fatalf("complete docs rejected: %v", err)
	}
	if _, err := FieldTable(reflect.TypeFor[spec](), docs[:1], "test"); err == nil || !strings.Contains(err.Error(), "check.path") {
		t.Errorf("a field without docs must fail naming it, got %v", err)
	}
	if _, err := FieldTable(reflect.TypeFor[spec](), append(docs, providers.FieldDoc{Field: "gone"}), "test"); err == nil {
		t.Error("docs of a field that does not exist must fail")
	}
}
