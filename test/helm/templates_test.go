package helm_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// TestValuesSchemaRejectsBadValues installs with one bad value at a time
// on top of valid ones: each must fail before anything renders, with an
// error naming the field. The valid values alone must install, so every
// failure is the bad value's.
func TestValuesSchemaRejectsBadValues(t *testing.T) {
	if _, err := renderErr(namespace, []string{"testdata/overlay-aws.yaml"}, ""); err != nil {
		t.Fatalf("the valid values fail: %v", err)
	}
	cases := []struct {
		name   string
		values string
		// field is what the error must name.
		field string
	}{
		{"no clusterName", "clusterName: null", "clusterName"},
		{"empty clusterName", `clusterName: ""`, "clusterName"},
		{"clusterName with a space", `clusterName: "my cluster"`, "clusterName"},
		{"no providers", "providers: []", "providers"},
		{"unknown provider", "providers: [azure]", "providers"},
		{"provider twice", "providers: [aws, aws]", "providers"},
		{"aws without a region", `aws: {region: ""}`, "region"},
		{"gcp without a project", "providers: [gcp]", "project"},
		{"malformed vpc id", "aws: {vpcId: my-vpc}", "vpcId"},
		{"malformed role ARN", "aws: {roleArn: podlb-role}", "roleArn"},
		{"malformed rate limit", "aws: {rateLimits: {RegisterTargets: fast}}", "RegisterTargets"},
		{"gcp batch over 500", "providers: [aws, gcp]\ngcp: {project: my-project, batchSize: 501}", "batchSize"},
		{"gcp endpoint not a string", "gcp: {endpoint: 443}", "endpoint"},
		{"gcp endpoint without a scheme", "gcp: {endpoint: compute-myendpoint.p.googleapis.com}", "endpoint"},
		{"gcp endpoint of another scheme", `gcp: {endpoint: "grpc://compute-myendpoint.p.googleapis.com"}`, "endpoint"},
		{"gcp token file not a string", "gcp: {accessTokenFile: true}", "accessTokenFile"},
		{"relative gcp token file", "gcp: {accessTokenFile: token}", "accessTokenFile"},
		{"no replicas", "replicaCount: 0", "replicaCount"},
		{"replicas not a number", "replicaCount: two", "replicaCount"},
		{"extra argument without dashes", "extraArgs: [workers=4]", "extraArgs"},
		{"unknown pull policy", "image: {pullPolicy: Sometimes}", "pullPolicy"},
		{"misspelt top-level value", "clustername: typo", "clustername"},
		{"ingress class name not a DNS name", "ingressClass: {create: true, name: Podlb_Class}", "name"},
		{"bad scrape interval", "serviceMonitor: {enabled: true, interval: often}", "interval"},
		{"extra volumes not a list", "extraVolumes: {name: gcp-token, emptyDir: {}}", "extraVolumes"},
		{"extra volume mount not an object", "extraVolumeMounts: [/var/run/podlb]", "extraVolumeMounts"},
		{"extra volume mount without a path", "extraVolumeMounts: [{name: gcp-token}]", "mountPath"},
		{"extra container not an object", "extraContainers: [token-broker]", "extraContainers"},
		{"extra container without a name", "extraContainers: [{image: busybox}]", "name"},
		{"extra init container not an object", "extraInitContainers: [token-broker]", "extraInitContainers"},
		{"extra init container without a name", "extraInitContainers: [{image: busybox, restartPolicy: Always}]", "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderErr(namespace, []string{"testdata/overlay-aws.yaml"}, c.values)
			if err == nil {
				t.Fatalf("values %q installed", c.values)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("values %q: want a schema error naming %s, got: %v", c.values, c.field, err)
			}
		})
	}
}

// TestDeploymentArgs renders the controller's flags from the cloud values:
// a cloud's flags only when it is served, optional ones only when set,
// rate limits sorted by operation, extra arguments last.
func TestDeploymentArgs(t *testing.T) {
	objs := render(t, namespace, "testdata/both-clouds-one-replica.yaml")
	want := []string{
		"--cluster-name=e2e-chart",
		"--providers=aws,gcp",
		"--aws-region=us-west-2",
		"--gcp-project=my-project",
		"--gcp-subnetwork=my-subnet",
		"--gcp-batch-size=250",
		"--gcp-rate-limits=networkEndpointGroups.attachNetworkEndpoints=1:2",
		"--leader-elect=false",
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
	}
	if got := containerArgs(t, objs); !slices.Equal(got, want) {
		t.Errorf("args\n got %q\nwant %q", got, want)
	}

	objs = render(t, namespace, "testdata/aws-every-option.yaml")
	want = []string{
		"--cluster-name=e2e-chart",
		"--providers=aws",
		"--aws-region=eu-west-1",
		"--aws-vpc-id=vpc-0a1b2c3d",
		"--aws-batch-size=100",
		"--aws-rate-limits=DescribeTargetHealth=2.5:5,RegisterTargets=5:10",
		"--leader-elect=true",
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
		"--workers=4",
		"--zap-log-level=debug",
	}
	if got := containerArgs(t, objs); !slices.Equal(got, want) {
		t.Errorf("args\n got %q\nwant %q", got, want)
	}

	// Settings of a cloud that is not served are not passed on.
	objs = renderWith(t, "providers: [gcp]\ngcp: {project: my-project}")
	for _, a := range containerArgs(t, objs) {
		if strings.HasPrefix(a, "--aws-") {
			t.Errorf("gcp only, yet %s", a)
		}
	}
}

// TestDeploymentGCPEndpointAndTokenFile: --gcp-endpoint and
// --gcp-access-token-file follow the other GCP flags when set, and are
// left out when unset or when GCP is not served.
func TestDeploymentGCPEndpointAndTokenFile(t *testing.T) {
	common := []string{"--leader-elect=true", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"}
	gcp := func(flags ...string) []string {
		return slices.Concat([]string{"--cluster-name=my-cluster", "--providers=gcp", "--gcp-project=my-project"}, flags, common)
	}
	cases := []struct {
		name, values string
		want         []string
	}{
		{"unset", "providers: [gcp]\ngcp: {project: my-project}", gcp()},
		{"endpoint", "providers: [gcp]\ngcp: {project: my-project, endpoint: https://compute-myendpoint.p.googleapis.com}",
			gcp("--gcp-endpoint=https://compute-myendpoint.p.googleapis.com")},
		{"token file", "providers: [gcp]\ngcp: {project: my-project, accessTokenFile: /var/run/podlb/token}",
			gcp("--gcp-access-token-file=/var/run/podlb/token")},
		{"both, among the other gcp flags", "providers: [gcp]\ngcp: {project: my-project, subnetwork: my-subnet, endpoint: \"http://cloudsim:8085/compute/v1/\", accessTokenFile: /var/run/podlb/token, batchSize: 250}",
			gcp("--gcp-subnetwork=my-subnet", "--gcp-endpoint=http://cloudsim:8085/compute/v1/", "--gcp-access-token-file=/var/run/podlb/token", "--gcp-batch-size=250")},
		{"gcp not served", "gcp: {endpoint: https://compute-myendpoint.p.googleapis.com, accessTokenFile: /var/run/podlb/token}",
			slices.Concat([]string{"--cluster-name=my-cluster", "--providers=aws", "--aws-region=us-east-1", "--aws-vpc-id=vpc-0123456789abcdef0"}, common)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := containerArgs(t, renderWith(t, c.values)); !slices.Equal(got, c.want) {
				t.Errorf("args\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestDeploymentReplicas: more than one replica elects a leader and rolls
// with a surge; one replica does neither, so two controllers never act
// at once, and gets no PodDisruptionBudget (which would block drains).
func TestDeploymentReplicas(t *testing.T) {
	for _, c := range []struct {
		replicas int64
		elect    string
		strategy string
		pdb      bool
	}{
		{1, "--leader-elect=false", "Recreate", false},
		{2, "--leader-elect=true", "RollingUpdate", true},
		{3, "--leader-elect=true", "RollingUpdate", true},
	} {
		objs := renderWith(t, "replicaCount: "+strconv.FormatInt(c.replicas, 10))
		d := find(objs, "Deployment")
		if got := nested[int64](t, d, "spec", "replicas"); got != c.replicas {
			t.Errorf("replicas %d, want %d", got, c.replicas)
		}
		if !slices.Contains(containerArgs(t, objs), c.elect) {
			t.Errorf("%d replicas: args %q lack %s", c.replicas, containerArgs(t, objs), c.elect)
		}
		if got := nested[string](t, d, "spec", "strategy", "type"); got != c.strategy {
			t.Errorf("%d replicas: strategy %s, want %s", c.replicas, got, c.strategy)
		}
		if got := find(objs, "PodDisruptionBudget") != nil; got != c.pdb {
			t.Errorf("%d replicas: PodDisruptionBudget rendered %v, want %v", c.replicas, got, c.pdb)
		}
	}
}

// TestDeploymentPodValues: image, scheduling, annotations and resources
// reach the pod template.
func TestDeploymentPodValues(t *testing.T) {
	objs := render(t, namespace, "testdata/aws-every-option.yaml")
	d := find(objs, "Deployment")
	spec := nested[map[string]any](t, d, "spec", "template", "spec")
	c := spec["containers"].([]any)[0].(map[string]any)
	if c["image"] != "ghcr.io/podlb/podlb-controller:v0.0.1" || c["imagePullPolicy"] != "Always" {
		t.Errorf("image %v, pull policy %v", c["image"], c["imagePullPolicy"])
	}
	if got := nested[string](t, d, "spec", "template", "spec", "nodeSelector", "kubernetes.io/os"); got != "linux" {
		t.Errorf("nodeSelector %v", spec["nodeSelector"])
	}
	if got := nested[[]any](t, d, "spec", "template", "spec", "tolerations"); len(got) != 1 || got[0].(map[string]any)["key"] != "dedicated" {
		t.Errorf("tolerations %v", got)
	}
	if got := nested[string](t, d, "spec", "template", "metadata", "annotations", "example.com/team"); got != "networking" {
		t.Errorf("pod annotations: %q", got)
	}

	objs = renderWith(t, `
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [system]}]}]}}, podAntiAffinity: null}
topologySpreadConstraints: []
resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 1Gi}}
`)
	d = find(objs, "Deployment")
	affinity := nested[map[string]any](t, d, "spec", "template", "spec", "affinity")
	if _, ok := affinity["nodeAffinity"]; !ok {
		t.Errorf("affinity %v lacks the nodeAffinity given", affinity)
	}
	if _, ok := affinity["podAntiAffinity"]; ok {
		t.Errorf("affinity %v keeps the default podAntiAffinity after it was set to null", affinity)
	}
	if _, ok := nested[map[string]any](t, d, "spec", "template", "spec")["topologySpreadConstraints"]; ok {
		t.Errorf("topologySpreadConstraints rendered though set empty")
	}
	c = nested[[]any](t, d, "spec", "template", "spec", "containers")[0].(map[string]any)
	res := c["resources"].(map[string]any)
	if res["limits"].(map[string]any)["memory"] != "1Gi" || res["requests"].(map[string]any)["cpu"] != "50m" {
		t.Errorf("resources %v", res)
	}
}

// TestDeploymentExtraVolumesAndContainers: extraVolumes reach the pod,
// extraVolumeMounts the controller container alone, extraInitContainers
// are the pod's init containers and extraContainers follow the
// controller, each exactly as given; by default the pod has none of them.
func TestDeploymentExtraVolumesAndContainers(t *testing.T) {
	const extras = `
extraVolumes: [{name: gcp-token, emptyDir: {medium: Memory, sizeLimit: 1Mi}}]
extraVolumeMounts: [{name: gcp-token, mountPath: /var/run/podlb, readOnly: true}]
extraContainers:
  - name: token-broker
    image: registry.example.com/token-broker:v1
    args: [--out=/var/run/podlb/token]
    volumeMounts: [{name: gcp-token, mountPath: /var/run/podlb}]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
extraInitContainers:
  - name: broker-sidecar
    image: registry.example.com/token-broker:v1
    restartPolicy: Always
    startupProbe: {exec: {command: [test, -s, /var/run/podlb/token]}, periodSeconds: 1, failureThreshold: 60}
    volumeMounts: [{name: gcp-token, mountPath: /var/run/podlb}]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
  - name: wait-for-network
    image: registry.example.com/wait:v1
`
	// Numbers as int64, as in the rendered objects.
	var given map[string]any
	if err := utilyaml.Unmarshal([]byte(extras), &given); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, values string
		// Each is nil when the field must be absent.
		volumes, mounts, inits, sidecars any
	}{
		{"defaults", "", nil, nil, nil, nil},
		{"set", extras, given["extraVolumes"], given["extraVolumeMounts"], given["extraInitContainers"], given["extraContainers"]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := nested[map[string]any](t, find(renderWith(t, c.values), "Deployment"), "spec", "template", "spec")
			containers := spec["containers"].([]any)
			controller := containers[0].(map[string]any)
			if controller["name"] != "controller" {
				t.Fatalf("first container %v, want the controller", controller["name"])
			}
			var sidecars any
			if len(containers) > 1 {
				sidecars = containers[1:]
			}
			for _, f := range []struct {
				field     string
				got, want any
			}{
				{"volumes", spec["volumes"], c.volumes},
				{"controller volumeMounts", controller["volumeMounts"], c.mounts},
				{"initContainers", spec["initContainers"], c.inits},
				{"containers after the controller", sidecars, c.sidecars},
			} {
				if d := cmp.Diff(f.want, f.got); d != "" {
					t.Errorf("%s (-want +got):\n%s", f.field, d)
				}
			}
		})
	}
}

// TestServiceAccountIdentity: the IRSA and Workload Identity annotations
// follow the served clouds and are left out when empty.
func TestServiceAccountIdentity(t *testing.T) {
	cases := []struct {
		name, values string
		want         map[string]any
	}{
		{"aws role", "", map[string]any{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/podlb-controller"}},
		{"aws pod identity", `aws: {roleArn: ""}`, nil},
		{"both clouds", "providers: [aws, gcp]\ngcp: {project: my-project, serviceAccount: p@my-project.iam.gserviceaccount.com}", map[string]any{
			"eks.amazonaws.com/role-arn":     "arn:aws:iam::111122223333:role/podlb-controller",
			"iam.gke.io/gcp-service-account": "p@my-project.iam.gserviceaccount.com",
		}},
		{"gcp only ignores the aws role", "providers: [gcp]\ngcp: {project: my-project}", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sa := find(renderWith(t, c.values), "ServiceAccount")
			got := sa.GetAnnotations()
			if len(got) != len(c.want) {
				t.Fatalf("annotations %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestIngressClass: none by default; when created it names podlb's
// controller, and is the cluster default only when asked.
func TestIngressClass(t *testing.T) {
	if o := find(renderWith(t, ""), "IngressClass"); o != nil {
		t.Fatalf("IngressClass rendered by default: %v", o)
	}
	for _, def := range []bool{false, true} {
		o := find(renderWith(t, "ingressClass: {create: true, name: lb, default: "+strconv.FormatBool(def)+"}"), "IngressClass")
		if o == nil {
			t.Fatal("no IngressClass with ingressClass.create")
		}
		if o.GetName() != "lb" || o.GetNamespace() != "" {
			t.Errorf("IngressClass %s/%s, want cluster-scoped lb", o.GetNamespace(), o.GetName())
		}
		if got := nested[string](t, o, "spec", "controller"); got != "podlb.io/ingress" {
			t.Errorf("spec.controller %q", got)
		}
		got, marked := o.GetAnnotations()["ingressclass.kubernetes.io/is-default-class"]
		if marked != def || (def && got != "true") {
			t.Errorf("default %v: annotations %v", def, o.GetAnnotations())
		}
	}
}

// TestServiceMonitor scrapes the metrics Service in the release's own
// namespace at the interval given, with the labels given.
func TestServiceMonitor(t *testing.T) {
	if o := find(renderWith(t, ""), "ServiceMonitor"); o != nil {
		t.Fatalf("ServiceMonitor rendered by default")
	}
	objs, err := renderErr("lb-system", []string{"testdata/overlay-aws.yaml"}, "serviceMonitor: {enabled: true, interval: 1m, labels: {release: monitoring}}")
	if err != nil {
		t.Fatal(err)
	}
	sm := find(objs, "ServiceMonitor")
	if sm.GetLabels()["release"] != "monitoring" {
		t.Errorf("labels %v lack release=monitoring", sm.GetLabels())
	}
	if names := nested[[]any](t, sm, "spec", "namespaceSelector", "matchNames"); len(names) != 1 || names[0] != "lb-system" {
		t.Errorf("namespaceSelector %v, want lb-system", names)
	}
	if got := nested[[]any](t, sm, "spec", "endpoints")[0].(map[string]any)["interval"]; got != "1m" {
		t.Errorf("interval %v", got)
	}
	svc := find(objs, "Service")
	for k, v := range nested[map[string]any](t, sm, "spec", "selector", "matchLabels") {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%v, the metrics Service has %v", k, v, svc.GetLabels())
		}
	}
}

// TestPrometheusRule: none by default; enabled, it carries the alerts of
// components/alerts with their Prometheus templates untouched (Helm must
// not execute them), extra labels for the ruleSelector, or the groups
// given instead.
func TestPrometheusRule(t *testing.T) {
	if o := find(renderWith(t, ""), "PrometheusRule"); o != nil {
		t.Fatalf("PrometheusRule rendered by default")
	}
	rule := find(renderWith(t, "prometheusRule: {enabled: true, labels: {release: monitoring}}"), "PrometheusRule")
	if rule.GetLabels()["release"] != "monitoring" || rule.GetLabels()["app.kubernetes.io/name"] != "podlb-controller" {
		t.Errorf("labels %v", rule.GetLabels())
	}
	var templated int
	for _, g := range nested[[]any](t, rule, "spec", "groups") {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			for _, a := range r.(map[string]any)["annotations"].(map[string]any) {
				if strings.Contains(a.(string), "{{ $labels.") || strings.Contains(a.(string), "{{ $value") {
					templated++
				}
			}
		}
	}
	if templated == 0 {
		t.Errorf("no alert annotation keeps its Prometheus template")
	}

	objs := renderWith(t, `prometheusRule: {enabled: true, groups: [{name: mine, rules: [{alert: PodlbDown, expr: "absent(up{job=\"podlb\"})", annotations: {summary: "{{ $labels.job }} down"}}]}]}`)
	groups := nested[[]any](t, find(objs, "PrometheusRule"), "spec", "groups")
	if len(groups) != 1 || groups[0].(map[string]any)["name"] != "mine" {
		t.Fatalf("groups %v, want only the given one", groups)
	}
	r := groups[0].(map[string]any)["rules"].([]any)[0].(map[string]any)
	if r["annotations"].(map[string]any)["summary"] != "{{ $labels.job }} down" {
		t.Errorf("rule %v: the Prometheus template was altered", r)
	}
}

// TestPodDisruptionBudget can be turned off and takes its minimum.
func TestPodDisruptionBudget(t *testing.T) {
	if o := find(renderWith(t, "podDisruptionBudget: {enabled: false}"), "PodDisruptionBudget"); o != nil {
		t.Errorf("PodDisruptionBudget rendered though disabled")
	}
	pdb := find(renderWith(t, "replicaCount: 3\npodDisruptionBudget: {minAvailable: 2}"), "PodDisruptionBudget")
	if got := nested[int64](t, pdb, "spec", "minAvailable"); got != 2 {
		t.Errorf("minAvailable %d, want 2", got)
	}
}

// TestReleaseNamespace: installed elsewhere, every namespaced object and
// both RBAC subjects move with the release; only the IngressClass and the
// cluster roles are cluster-scoped.
func TestReleaseNamespace(t *testing.T) {
	objs, err := renderErr("lb-system", []string{"testdata/aws-every-option.yaml"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole", "ClusterRoleBinding", "IngressClass":
			if o.GetNamespace() != "" {
				t.Errorf("%s in a namespace", key(o))
			}
		default:
			if o.GetNamespace() != "lb-system" {
				t.Errorf("%s not in the release namespace", key(o))
			}
		}
		if o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "RoleBinding" {
			subject := nested[[]any](t, o, "subjects")[0].(map[string]any)
			if subject["namespace"] != "lb-system" {
				t.Errorf("%s binds %v", key(o), subject)
			}
		}
	}
	want := []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "IngressClass", "PodDisruptionBudget", "PrometheusRule", "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor"}
	if got := kinds(objs); !slices.Equal(got, want) {
		t.Errorf("kinds %v, want %v", got, want)
	}
}
