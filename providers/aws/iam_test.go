package aws

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// apiCall finds the ELBv2 and EC2 calls the provider makes: p.elb.X and
// p.ec2.X, and the EC2 paginators.
var apiCall = regexp.MustCompile(`p\.(elb|ec2)\.([A-Z][A-Za-z]+)\(|ec2\.New([A-Z][A-Za-z]+)Paginator\(`)

// providerCalls lists the IAM actions of the calls in the package's
// non-test sources.
func providerCalls(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range apiCall.FindAllStringSubmatch(string(src), -1) {
			switch {
			case m[1] == "elb":
				out = append(out, "elasticloadbalancing:"+m[2])
			case m[1] == "ec2":
				out = append(out, "ec2:"+m[2])
			default:
				out = append(out, "ec2:"+m[3])
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// policyActions lists the actions manifests/aws/iam-policy.json allows.
func policyActions(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../manifests/aws/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		Statement []struct {
			Action json.RawMessage
		}
	}
	if err := json.Unmarshal(raw, &policy); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range policy.Statement {
		var one string
		var many []string
		if json.Unmarshal(s.Action, &one) == nil {
			many = []string{one}
		} else if err := json.Unmarshal(s.Action, &many); err != nil {
			t.Fatal(err)
		}
		out = append(out, many...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestIAMPolicyAllowsEveryCallAndTheGuideNamesEveryAction(t *testing.T) {
	calls, allowed := providerCalls(t), policyActions(t)
	if len(calls) < 20 {
		t.Fatalf("found only %d calls (%v): the pattern misses the provider's call sites", len(calls), calls)
	}
	for _, c := range calls {
		if !slices.Contains(allowed, c) {
			t.Errorf("the provider calls %s, which manifests/aws/iam-policy.json does not allow", c)
		}
	}
	for _, a := range allowed {
		if !slices.Contains(calls, a) {
			t.Errorf("manifests/aws/iam-policy.json allows %s, which the provider never calls", a)
		}
	}
	guide, err := os.ReadFile("../../docs/guide.md")
	if err != nil {
		t.Fatal(err)
	}
	section, _, _ := strings.Cut(string(guide)[strings.Index(string(guide), "### AWS: IAM"):], "\n### ")
	for _, a := range allowed {
		service, name, _ := strings.Cut(a, ":")
		// The table names an action in full or, after the first of its
		// row, by its name alone.
		if !strings.Contains(section, "`"+a+"`") && !(strings.Contains(section, "`"+name+"`") && strings.Contains(section, "`"+service+":")) {
			t.Errorf("docs/guide.md's AWS IAM section does not name %s", a)
		}
	}
}
