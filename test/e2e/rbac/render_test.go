package rbac_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// manifestsDir is the repository's manifests directory seen from this
// package's directory, where `go test` runs.
const manifestsDir = "../../../manifests"

const (
	installNamespace = "podlb-system"
	serviceAccount   = "podlb-controller"
	fieldOwner       = "podlb-install-test"
)

// variant is one way to install podlb: a kustomization directory.
type variant struct {
	name string
	dir  func(t testing.TB) string
	// args the controller must be started with, besides the common ones.
	args []string
	// saAnnotation is the cloud identity annotation the service account
	// must carry ("" for none).
	saAnnotation string
	// monitored variants include the ServiceMonitor, alerts and
	// dashboards components.
	monitored bool
}

func fixed(rel string) func(testing.TB) string {
	return func(testing.TB) string { return filepath.Join(manifestsDir, rel) }
}

var variants = []variant{
	{name: "base", dir: fixed("base")},
	{name: "aws", dir: fixed("overlays/aws"), args: []string{"--providers=aws", "--aws-region=", "--aws-vpc-id="}, saAnnotation: "eks.amazonaws.com/role-arn"},
	{name: "gcp", dir: fixed("overlays/gcp"), args: []string{"--providers=gcp", "--gcp-project=", "--gcp-network="}, saAnnotation: "iam.gke.io/gcp-service-account"},
	{name: "aws-monitoring", dir: monitoredOverlay, args: []string{"--providers=aws"}, saAnnotation: "eks.amazonaws.com/role-arn", monitored: true},
}

// monitoredOverlay writes the overlay the guide tells users to write to
// add the monitoring components to a cloud overlay.
func monitoredOverlay(t testing.TB) string {
	t.Helper()
	abs, err := filepath.Abs(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Kustomize wants relative paths to bases and components.
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
components:
  - %s
  - %s
  - %s
`, filepath.Join(rel, "overlays/aws"), filepath.Join(rel, "components/servicemonitor"),
		filepath.Join(rel, "components/alerts"), filepath.Join(rel, "components/dashboards"))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// render runs kustomize (the library kubectl -k uses) on a directory.
func render(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, so numbers are int64/float64 as API machinery
		// expects of unstructured objects.
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		out = append(out, u)
	}
	return out
}

// typed finds the one object of a kind (and name, when not empty) and
// converts it to its Go type.
func typed[T any](t testing.TB, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			if found != nil {
				t.Fatalf("more than one %s %q", kind, name)
			}
			found = o
		}
	}
	if found == nil {
		t.Fatalf("no %s %q rendered", kind, name)
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(found.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", kind, found.GetName(), err)
	}
	return out
}

// TestRender checks what each variant renders to without a cluster: the
// objects, their namespace, the controller's flags (against the real
// binary), identity annotations and the least-privilege rules.
func TestRender(t *testing.T) {
	bin := controllerBinary(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := render(t, v.dir(t))
			want := []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "Namespace", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"}
			if v.monitored {
				want = append(want, "ServiceMonitor", "PrometheusRule", "ConfigMap")
				slices.Sort(want)
			}
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.GetKind())
				scoped := o.GetKind() != "Namespace" && o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding"
				if scoped && o.GetNamespace() != installNamespace {
					t.Errorf("%s %s in namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), installNamespace)
				}
				if o.GetLabels()["app.kubernetes.io/part-of"] != "podlb" {
					t.Errorf("%s %s lacks app.kubernetes.io/part-of=podlb", o.GetKind(), o.GetName())
				}
			}
			slices.Sort(kinds)
			if !slices.Equal(kinds, want) {
				t.Fatalf("rendered %v, want %v", kinds, want)
			}

			ns := typed[corev1.Namespace](t, objs, "Namespace", installNamespace)
			if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Errorf("namespace labels %v: want pod-security.kubernetes.io/enforce=restricted", ns.Labels)
			}
			sa := typed[corev1.ServiceAccount](t, objs, "ServiceAccount", serviceAccount)
			if v.saAnnotation != "" && sa.Annotations[v.saAnnotation] == "" {
				t.Errorf("service account annotations %v: want %s", sa.Annotations, v.saAnnotation)
			}

			d := typed[appsv1.Deployment](t, objs, "Deployment", "podlb-controller")
			checkDeployment(t, d, v, bin)
			checkRules(t, typed[rbacv1.ClusterRole](t, objs, "ClusterRole", "podlb-controller").Rules)
			checkRules(t, typed[rbacv1.Role](t, objs, "Role", "podlb-controller").Rules)
			for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
				var subjects []rbacv1.Subject
				if kind == "RoleBinding" {
					subjects = typed[rbacv1.RoleBinding](t, objs, kind, "podlb-controller").Subjects
				} else {
					subjects = typed[rbacv1.ClusterRoleBinding](t, objs, kind, "podlb-controller").Subjects
				}
				if len(subjects) != 1 || subjects[0].Kind != "ServiceAccount" || subjects[0].Name != serviceAccount || subjects[0].Namespace != installNamespace {
					t.Errorf("%s subjects %+v: want only the podlb-controller service account", kind, subjects)
				}
			}
		})
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, v variant, bin string) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != serviceAccount {
		t.Errorf("serviceAccountName %q", spec.ServiceAccountName)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/podlb/podlb-controller:") {
		t.Errorf("image %q: the images transformer did not apply", c.Image)
	}
	for _, want := range append([]string{"--cluster-name=", "--leader-elect=true", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"}, v.args...) {
		if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, want) }) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	// The flags must be the controller's own: it parses them all before
	// --version, so an unknown or misspelt flag fails here.
	if bin != "" {
		out, err := exec.Command(bin, append(slices.Clone(c.Args), "--version")...).CombinedOutput()
		if err != nil {
			t.Errorf("podlb-controller %v --version: %v\n%s", c.Args, err, out)
		}
	}
	envOK := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	})
	if !envOK {
		t.Errorf("env %+v: want POD_NAMESPACE from metadata.namespace", c.Env)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["metrics"] != 8080 || ports["health"] != 8081 {
		t.Errorf("ports %v: want metrics 8080, health 8081", ports)
	}
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "health" {
			t.Errorf("probe %s: %+v", name, p)
		}
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	if len(spec.TopologySpreadConstraints) == 0 || spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil {
		t.Errorf("replicas are not spread: %+v %+v", spec.TopologySpreadConstraints, spec.Affinity)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem", sc)
	}
}

// checkRules rejects wildcards and anything touching secrets: podlb needs
// neither, and a later edit adding them should have to change this test.
func checkRules(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	for _, r := range rules {
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			if slices.Contains(list, "*") {
				t.Errorf("rule %+v has a wildcard", r)
			}
		}
		if slices.Contains(r.Resources, "secrets") {
			t.Errorf("rule %+v grants secrets", r)
		}
	}
}

// controllerBinary builds podlb-controller for the flag check; it returns
// "" (and the check is skipped) when no go tool is at hand.
func controllerBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Log("no go tool: flags are not checked against the binary")
		return ""
	}
	bin := filepath.Join(t.TempDir(), "podlb-controller")
	if out, err := exec.Command(goTool, "build", "-o", bin, "../../../cmd/podlb-controller").CombinedOutput(); err != nil {
		t.Fatalf("building podlb-controller: %v\n%s", err, out)
	}
	return bin
}

// TestServerSideDryRun applies every rendered object of every variant to
// the real kube-apiserver as a server-side apply with dryRun=All: schema,
// defaulting, validation and admission all run, nothing is stored.
func TestServerSideDryRun(t *testing.T) {
	cluster.Require(t)
	ctx := context.Background()
	installMonitoringCRD(t, "servicemonitors", "ServiceMonitor")
	installMonitoringCRD(t, "prometheusrules", "PrometheusRule")
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := render(t, v.dir(t))
			// Namespaced objects can only be dry-run into a namespace that
			// exists, so the Namespace itself is applied for real first.
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					apply(t, o)
				}
			}
			for _, o := range objs {
				err := kube.CRClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
					client.FieldOwner(fieldOwner), client.ForceOwnership, client.DryRunAll)
				if err != nil {
					t.Errorf("dry-run apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
				}
			}
		})
	}
}

// apply stores an object with server-side apply.
func apply(t testing.TB, o *unstructured.Unstructured) {
	t.Helper()
	err := kube.CRClient.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
		client.FieldOwner(fieldOwner), client.ForceOwnership)
	if err != nil {
		t.Fatalf("apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
}

// installMonitoringCRD registers a Prometheus Operator kind (plural and
// kind, group monitoring.coreos.com), as the operator does, so the
// components' objects can be applied. Its schema accepts any spec: this
// proves the object is well-formed and namespaced as the operator
// expects, not the operator's validation.
func installMonitoringCRD(t *testing.T, plural, kind string) {
	t.Helper()
	ctx := context.Background()
	name := plural + ".monitoring.coreos.com"
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"group": "monitoring.coreos.com",
			"names": map[string]any{"plural": plural, "singular": strings.ToLower(kind), "kind": kind, "listKind": kind + "List"},
			"scope": "Namespaced",
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object",
					"properties": map[string]any{
						"spec": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
					},
				}},
			}},
		},
	}}
	if err := kube.CRClient.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create CRD: %v", err)
	}
	e2eutil.Eventually(t, 60*time.Second, kind+" CRD established", func() error {
		got := &unstructured.Unstructured{}
		got.SetAPIVersion("apiextensions.k8s.io/v1")
		got.SetKind("CustomResourceDefinition")
		if err := kube.CRClient.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", conds)
	})
	// The client's REST mapper learns the new kind lazily; wait until a
	// list through it works.
	e2eutil.Eventually(t, 60*time.Second, kind+" served", func() error {
		l := &unstructured.UnstructuredList{}
		l.SetAPIVersion("monitoring.coreos.com/v1")
		l.SetKind(kind + "List")
		return kube.CRClient.List(ctx, l, client.InNamespace(installNamespace))
	})
}
