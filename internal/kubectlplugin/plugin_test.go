package kubectlplugin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/manifests"
	"github.com/podlb/podlb/readiness"
	"github.com/podlb/podlb/targets"
)

func TestStatusTableHasOneAlignedRowPerCloudAndPortInOrder(t *testing.T) {
	st := &targets.Status{
		Bindings: map[string]map[string]*targets.BindingStatus{
			"gcp": {"80": {Group: "k8s-web-80", Owned: true, Desired: 3, Registered: 3, Healthy: 2}},
			"aws": {
				"9090": {Group: "targetgroup/metrics/1", Desired: 3, Registered: 2, Healthy: 1, Error: "throttled: Rate exceeded",
					Rejected: map[string]string{"10.0.0.9:9090": "ValidationError: not in VPC", "10.0.0.2:9090": "TooManyTargets"}},
				"80": {Group: "targetgroup/pl-shop-web-1/2", Owned: true, Desired: 3, Registered: 3, Healthy: 3,
					Details: map[string]string{"vpc": "vpc-1", "arn": "arn:aws:x"}},
			},
		},
		Problems: []string{`podlb.io/aws-target-groups["8443"]: no such port`},
		Ignored:  []string{"podlb.io/gcp-negs: this controller does not serve gcp"},
	}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	var header, rows []string
	for i, l := range lines {
		if strings.HasPrefix(l, "CLOUD") {
			header, rows = strings.Fields(l), lines[i+1:i+4]
			break
		}
	}
	if want := []string{"CLOUD", "PORT", "GROUP", "OWNED", "DESIRED", "REGISTERED", "HEALTHY", "REJECTED", "ERROR"}; strings.Join(header, " ") != strings.Join(want, " ") {
		t.Fatalf("header %v, want %v\n%s", header, want, out)
	}
	want := [][]string{
		{"aws", "80", "targetgroup/pl-shop-web-1/2", "yes", "3", "3", "3", "0", "-"},
		{"aws", "9090", "targetgroup/metrics/1", "no", "3", "2", "1", "2", "throttled:", "Rate", "exceeded"},
		{"gcp", "80", "k8s-web-80", "yes", "3", "3", "2", "0", "-"},
	}
	for i, w := range want {
		if got := strings.Fields(rows[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("row %d = %q, want %q", i, got, w)
		}
	}
	// Aligned: every row's GROUP starts where the header's does.
	col := strings.Index(lines[indexOf(lines, "CLOUD")], "GROUP")
	for _, r := range rows {
		if !strings.HasPrefix(r[col:], "k8s-") && !strings.HasPrefix(r[col:], "targetgroup/") {
			t.Errorf("row %q: GROUP not at column %d", r, col)
		}
	}
	for _, s := range []string{
		"Refused targets",
		"  aws 9090 10.0.0.2:9090: TooManyTargets\n  aws 9090 10.0.0.9:9090: ValidationError: not in VPC\n",
		"Annotation problems:\n  podlb.io/aws-target-groups[\"8443\"]: no such port\n",
		"Ignored annotations:\n  podlb.io/gcp-negs: this controller does not serve gcp\n",
		"Details:\n  aws 80: arn=arn:aws:x vpc=vpc-1\n",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func indexOf(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func TestStatusReportShowsWhyThereIsNoStatusAndNewestWarnings(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	rep := &statusReport{object: "service shop/web", note: "no podlb.io/status yet",
		warnings: []corev1.Event{{Reason: "InvalidAnnotation", Message: "bad\tfield", Count: 3,
			LastTimestamp: metav1.NewTime(now.Add(-90 * time.Second))}}}
	var b bytes.Buffer
	if err := rep.write(&b, now); err != nil {
		t.Fatal(err)
	}
	want := "service shop/web\n  no podlb.io/status yet\n\nRecent Warning Events:\nLAST SEEN  REASON             COUNT  MESSAGE\n90s        InvalidAnnotation  3      bad field\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestWaitingForNamesWhatEachReasonWaitsFor(t *testing.T) {
	cond := func(status corev1.ConditionStatus, reason, msg string) *corev1.PodCondition {
		return &corev1.PodCondition{Type: targets.GateConditionType, Status: status, Reason: reason, Message: msg}
	}
	for _, tc := range []struct {
		name  string
		cond  *corev1.PodCondition
		gated bool
		want  string
	}{
		{"not gated, no condition", nil, false, "does not list the gate"},
		{"not gated, stray False condition", cond(corev1.ConditionFalse, readiness.ReasonPending, ""), false, "does not hold it back"},
		{"gated, no condition yet", nil, true, "not running or not leading"},
		{"open", cond(corev1.ConditionTrue, readiness.ReasonReady, ""), true, "stays open"},
		{"open, not selected", cond(corev1.ConditionTrue, readiness.ReasonNotSelected, ""), true, "stays open"},
		{"containers", cond(corev1.ConditionFalse, readiness.ReasonNotRegistered, "not registered in tg: waiting for the pod's containers to be ready"), true, "containers to become ready"},
		{"registration", cond(corev1.ConditionFalse, readiness.ReasonNotRegistered, "not registered in tg: registration pending"), true, "podlb to register the target"},
		{"pending", cond(corev1.ConditionFalse, readiness.ReasonPending, "initial: Elb.InitialHealthChecking in tg"), true, "first health checks"},
		{"unhealthy", cond(corev1.ConditionFalse, readiness.ReasonUnhealthy, ""), true, "health checks to pass"},
		{"unused", cond(corev1.ConditionFalse, readiness.ReasonUnused, ""), true, "podlb.io/readiness: registered"},
		{"invalid", cond(corev1.ConditionFalse, readiness.ReasonInvalid, ""), true, "annotation to be fixed"},
		{"error", cond(corev1.ConditionFalse, readiness.ReasonError, ""), true, "cloud error to clear"},
		{"rejected", cond(corev1.ConditionFalse, readiness.ReasonRejected, ""), true, "accept the target it refused"},
		{"unserved", cond(corev1.ConditionFalse, readiness.ReasonCloudNotServed, ""), true, "--gate-ignores-unserved-clouds"},
		{"True-only reason with False", cond(corev1.ConditionFalse, readiness.ReasonReady, ""), true, "something else wrote"},
		{"unknown", cond(corev1.ConditionFalse, "Mystery", ""), true, `reason "Mystery" is not one podlb writes`},
	} {
		if got := waitingFor(tc.cond, tc.gated); !strings.Contains(got, tc.want) {
			t.Errorf("%s: waitingFor = %q, want it to contain %q", tc.name, got, tc.want)
		}
	}
}

func TestPodTargetResolvesNamedAndNumberedPortsAndFindsRejection(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")},
		{Port: 9090, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9091)},
		{Port: 7000, Protocol: corev1.ProtocolTCP},
	}}}
	pod := &corev1.Pod{
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}, {IP: "fd00::5"}}},
	}
	rejected := &targets.BindingStatus{Rejected: map[string]string{"[fd00::5]:8080": "IPv6 in an IPv4 group"}}
	for _, tc := range []struct {
		port, target, rejected string
		status                 *targets.BindingStatus
	}{
		{"80", "10.0.0.5:8080,[fd00::5]:8080", "IPv6 in an IPv4 group", rejected},
		{"9090", "10.0.0.5:9091,[fd00::5]:9091", "", rejected},
		{"7000", "10.0.0.5:7000,[fd00::5]:7000", "", nil},
		{"1234", "", "", nil},
	} {
		target, rej := podTarget(svc, bindingRef{cloud: "aws", port: tc.port, status: tc.status}, pod)
		if target != tc.target || rej != tc.rejected {
			t.Errorf("port %s: target %q rejected %q, want %q %q", tc.port, target, rej, tc.target, tc.rejected)
		}
	}
}

func TestGrantedAccessCoversEveryVerbResourceAndName(t *testing.T) {
	got := grantedAccess([]rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "pods/status"}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"a", "b"}, Verbs: []string{"update"}},
	}, "podlb-system")
	var s []string
	for _, a := range got {
		s = append(s, a.String())
	}
	want := "get pods in podlb-system|patch pods in podlb-system|get pods/status in podlb-system|patch pods/status in podlb-system|" +
		"update leases.coordination.k8s.io a in podlb-system|update leases.coordination.k8s.io b in podlb-system"
	if strings.Join(s, "|") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(s, "|"), want)
	}
	// The real manifests expand to something: check has rules to verify.
	rbac, err := manifests.ControllerRBAC()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(grantedAccess(rbac.ClusterRole.Rules, "")); n < 10 {
		t.Errorf("manifests/base ClusterRole expands to %d permissions", n)
	}
}

func TestDrainSecondsReadsTheLongestDrainFromPodlbWarnings(t *testing.T) {
	evs := []corev1.Event{
		{Reason: "PodsWithoutGate", Message: "aws port 80: drains for 999s"},
		{Reason: "TerminationShorterThanDrain", Message: "aws port 80: 3 pods (e.g. web-1) stop serving 2s after termination starts, but targetgroup/x/1 drains for 30s: give them ..."},
		{Reason: "TerminationShorterThanDrain", Message: "gcp port 80: 3 pods (e.g. web-1) stop serving 2s after termination starts, but be drains for 45s: give them ..."},
	}
	if d, ok := drainSeconds(evs); !ok || d != 45 {
		t.Errorf("drainSeconds = %d, %v; want 45, true", d, ok)
	}
	if _, ok := drainSeconds(evs[:1]); ok {
		t.Errorf("a drain time read from an unrelated Warning")
	}
}

func TestFindingsCountOnlyProblems(t *testing.T) {
	var fs findings
	fs.add(levelOK, "controller", "leads")
	fs.add(levelInfo, "service a/b", "drain time unknown")
	fs.add(levelUnchecked, "permissions", "not checked")
	if fs.problems() != 0 {
		t.Fatalf("problems = %d with none", fs.problems())
	}
	fs.add(levelProblem, "service a/b", "1 of 2 pods lack readinessGates")
	var b bytes.Buffer
	if err := fs.write(&b); err != nil {
		t.Fatal(err)
	}
	if fs.problems() != 1 || !strings.HasSuffix(b.String(), "\n1 problem found\n") || !strings.Contains(b.String(), "PROBLEM    service a/b  1 of 2 pods lack") {
		t.Errorf("problems %d, output:\n%s", fs.problems(), b.String())
	}
}
