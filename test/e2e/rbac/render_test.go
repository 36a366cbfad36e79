package rbac_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
	"github.com/podlb/podlb/test/manifest"
)

// manifestsDir is the repository's manifests directory seen from this
// package's directory, where `go test` runs.
const manifestsDir = "../../../manifests"

// chartDir is the Helm chart, and helmModuleDir the Go module that renders
// it, seen from this package's directory.
const (
	chartDir      = "../../../charts/podlb"
	helmModuleDir = "../../helm"
)

const (
	installNamespace = "podlb-system"
	serviceAccount   = "podlb-controller"
	fieldOwner       = "podlb-install-test"
)

// variant is one way to install podlb: a kustomization directory or the
// Helm chart with a values file.
type variant struct {
	name   string
	render func(t testing.TB) []*unstructured.Unstructured
	// args the controller must be started with, besides the common ones.
	args []string
	// saAnnotation is the cloud identity annotation the service account
	// must carry ("" for none).
	saAnnotation string
	// replicas of the controller; with one there is no leader election
	// and no PodDisruptionBudget.
	replicas int32
	// extraKinds are rendered besides the base's objects.
	extraKinds []string
	// chart variants render no Namespace: helm install --create-namespace
	// makes it, and the tests use the base's labelled one.
	chart bool
}

func kustomized(rel string) func(testing.TB) []*unstructured.Unstructured {
	return func(t testing.TB) []*unstructured.Unstructured { return render(t, filepath.Join(manifestsDir, rel)) }
}

var variants = []variant{
	{name: "base", render: kustomized("base"), replicas: 2},
	{name: "aws", render: kustomized("overlays/aws"), args: []string{"--providers=aws", "--aws-region=", "--aws-vpc-id="}, saAnnotation: "eks.amazonaws.com/role-arn", replicas: 2},
	{name: "gcp", render: kustomized("overlays/gcp"), args: []string{"--providers=gcp", "--gcp-project=", "--gcp-network="}, saAnnotation: "iam.gke.io/gcp-service-account", replicas: 2},
	{name: "aws-monitoring", render: monitoredOverlay, args: []string{"--providers=aws"}, saAnnotation: "eks.amazonaws.com/role-arn", replicas: 2, extraKinds: []string{"ServiceMonitor", "PrometheusRule", "ConfigMap"}},
	// The chart with the overlays' values renders the overlays' objects
	// (test/helm proves it), so these cover what only the chart can do.
	{
		name: "chart-aws-every-option", render: chartRendered("aws-every-option.yaml"), chart: true, replicas: 2,
		args:         []string{"--providers=aws", "--aws-region=", "--aws-vpc-id=", "--aws-batch-size=", "--aws-rate-limits=", "--workers=4"},
		saAnnotation: "eks.amazonaws.com/role-arn", extraKinds: []string{"IngressClass", "ServiceMonitor", "PrometheusRule"},
	},
	{
		name: "chart-both-clouds-one-replica", render: chartRendered("both-clouds-one-replica.yaml"), chart: true, replicas: 1,
		args:         []string{"--providers=aws,gcp", "--aws-region=", "--gcp-project=", "--gcp-subnetwork=", "--gcp-batch-size=", "--gcp-rate-limits="},
		saAnnotation: "iam.gke.io/gcp-service-account",
	},
}

// monitoredOverlay writes the overlay the guide tells users to write to
// add the monitoring components to a cloud overlay.
func monitoredOverlay(t testing.TB) []*unstructured.Unstructured {
	t.Helper()
	dir, err := manifest.WriteOverlay(t.TempDir(), manifestsDir, "overlays/aws", "components/servicemonitor", "components/alerts", "components/dashboards")
	if err != nil {
		t.Fatal(err)
	}
	return render(t, dir)
}

// render runs kustomize (the library kubectl -k uses) on a directory.
func render(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := manifest.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// chartRendered renders charts/podlb with a values file of test/helm's
// testdata, through test/helm's render-chart: Helm's library lives in
// that module, not in this one. `go run` fetches the module's
// dependencies like any other build and cleans up after itself; the
// output is kept, as it only depends on the files.
func chartRendered(valuesFile string) func(testing.TB) []*unstructured.Unstructured {
	return func(t testing.TB) []*unstructured.Unstructured {
		t.Helper()
		out, err := renderedCharts.get(valuesFile)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := manifest.Decode(out)
		if err != nil {
			t.Fatalf("render-chart %s: %v", valuesFile, err)
		}
		return objs
	}
}

// chartOutputs keeps render-chart's output by values file.
type chartOutputs struct {
	mu  sync.Mutex
	out map[string][]byte
}

var renderedCharts chartOutputs

func (c *chartOutputs) get(valuesFile string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, ok := c.out[valuesFile]; ok {
		return out, nil
	}
	chart, err := filepath.Abs(chartDir)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "run", "./cmd/render-chart", "-chart", chart, "-namespace", installNamespace, "-values", filepath.Join("testdata", valuesFile))
	cmd.Dir = helmModuleDir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("render-chart %s: %v\n%s", valuesFile, err, stderr.String())
	}
	if c.out == nil {
		c.out = map[string][]byte{}
	}
	c.out[valuesFile] = out
	return out, nil
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
			objs := v.render(t)
			want := append([]string{"ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"}, v.extraKinds...)
			if !v.chart {
				want = append(want, "Namespace")
			}
			if v.replicas > 1 {
				want = append(want, "PodDisruptionBudget")
			}
			slices.Sort(want)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.GetKind())
				scoped := !slices.Contains([]string{"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}, o.GetKind())
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

			if !v.chart {
				ns := typed[corev1.Namespace](t, objs, "Namespace", installNamespace)
				if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
					t.Errorf("namespace labels %v: want pod-security.kubernetes.io/enforce=restricted", ns.Labels)
				}
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
	if d.Spec.Replicas == nil || *d.Spec.Replicas != v.replicas {
		t.Errorf("replicas %v, want %d", d.Spec.Replicas, v.replicas)
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
	// A single replica has no standby to hand over to, so it runs without
	// leader election.
	leaderElect := fmt.Sprintf("--leader-elect=%t", v.replicas > 1)
	for _, want := range append([]string{"--cluster-name=", leaderElect, "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"}, v.args...) {
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
			objs := v.render(t)
			// Namespaced objects can only be dry-run into a namespace that
			// exists, so the Namespace itself is applied for real first.
			applyNamespace(t, objs)
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

// applyNamespace applies the Namespace a variant renders for real, or the
// base's for the chart, which leaves it to helm install
// --create-namespace.
func applyNamespace(t testing.TB, objs []*unstructured.Unstructured) {
	t.Helper()
	isNamespace := func(o *unstructured.Unstructured) bool { return o.GetKind() == "Namespace" }
	if !slices.ContainsFunc(objs, isNamespace) {
		objs = variants[0].render(t)
	}
	for _, o := range objs {
		if isNamespace(o) {
			apply(t, o)
		}
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
