package gcp_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const gcpKey = "podlb.io/gcp-negs"

// Invariant: a broken edit of a bound Service's annotation never releases
// what the last good annotation bound; only a clear removal does.
//
// On GCP a release takes the NEGs out of the backend service and deletes
// them: each kind of broken edit, also across a controller restart, must
// leave the NEGs, their backends and their endpoints alone while traffic
// flows through the proxy. Fixing the edit resumes; removing the port's
// entry from a valid value releases.
func TestSafetyBrokenAnnotationKeepsServing(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	bs, addr := loadBalancer(t, resourceName(ns, "typo"), 2)
	neg := negName(ns, "typo")
	good := inBackendService(bs)[gcpKey]
	k8s.Create(t, e2eutil.WebService(ns, "typo", map[string]string{gcpKey: good}), e2eutil.RollingDeployment(ns, "typo", 4, true))
	e2eutil.Eventually(t, 90*time.Second, "4 gated pods HEALTHY and Ready", func() error {
		return converged(t, ns, "typo", neg, bs, 4, computesim.StateHealthy, true)
	})
	zs := zonesWithNodes(t)
	load := loadgen.Start(addr, 4, 25*time.Millisecond)
	broken := []struct{ name, value, want string }{
		{"trailing comma", strings.TrimSuffix(good, "}") + ",}", "malformed JSON"},
		{"unknown field", strings.Replace(good, `{"backendService"`, `{"weight": 3, "backendService"`, 1), "unknown field"},
		{"port key no longer resolves", strings.Replace(good, `"http"`, `"htpp"`, 1), `no port named "htpp"`},
	}
	for i, b := range broken {
		k8s.Annotate(t, ns, "typo", gcpKey, b.value)
		e2eutil.Eventually(t, 30*time.Second, b.name+": status and Warning say the last good binding stays", func() error {
			s := k8s.StatusJSON(t, ns, "typo")
			if !strings.Contains(s, strings.ReplaceAll(b.want, `"`, `\"`)) || !strings.Contains(s, "last good binding of port 80 stays in force") {
				return fmt.Errorf("status %s", s)
			}
			if ws := k8s.Warnings(t, ns, "typo", "stays in force"); len(ws) == 0 {
				return fmt.Errorf("no Warning")
			}
			return nil
		})
		if i == 0 {
			restartController(t, false)
		}
		time.Sleep(2 * time.Second)
		if got := backendNEGs(t, bs); !slices.Equal(got, zonal(neg, zs)) {
			t.Fatalf("%s: backends of %s are %v, want %v", b.name, bs, got, zonal(neg, zs))
		}
		if err := converged(t, ns, "typo", neg, bs, 4, computesim.StateHealthy, true); err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
	}
	k8s.Annotate(t, ns, "typo", gcpKey, good)
	e2eutil.Eventually(t, 30*time.Second, "problems cleared", func() error {
		if st := k8s.Status(t, ns, "typo"); st == nil || len(st.Problems) != 0 {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "typo"))
		}
		return nil
	})
	res := load.Stop()
	t.Logf("through broken edits and a restart: %d ok, %d failed", res.OK, res.Failed)
	if res.Failed != 0 || res.OK < 100 {
		t.Errorf("%d requests failed (%d ok): %v", res.Failed, res.OK, res.Errors)
	}
	// A clear removal of the port's entry releases: the NEGs leave the
	// backend service and are deleted.
	k8s.Annotate(t, ns, "typo", gcpKey, `{}`)
	e2eutil.Eventually(t, 60*time.Second, "NEGs released", func() error {
		if got := backendNEGs(t, bs); len(got) != 0 {
			return fmt.Errorf("backends %v", got)
		}
		if n := negsNamed(t, neg); len(n) != 0 {
			return fmt.Errorf("NEGs %v", n)
		}
		return nil
	})
}
