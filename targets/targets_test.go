package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/providers"
)

// fakeProvider parses {"group": "..."} values; enough to test the core's
// annotation handling without a cloud.
type fakeProvider struct{ name, key string }

type fakeSpec struct{ Group string }

func (s fakeSpec) Summary() string { return s.Group }

func (p fakeProvider) Name() string          { return p.name }
func (p fakeProvider) AnnotationKey() string { return p.key }
func (p fakeProvider) ParseSpec(raw json.RawMessage) (providers.Spec, error) {
	var v struct {
		Group string `json:"group"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	if v.Group == "" {
		return nil, providers.Errorf(providers.Invalid, "group", "must be set")
	}
	return fakeSpec{v.Group}, nil
}

func service(annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: annotations},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)},
			{Name: "metrics", Port: 9090, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("metrics")},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		}},
	}
}

func parse(t *testing.T, ann map[string]string) ParsedService {
	t.Helper()
	aws := stubProvider{fakeProvider{"aws", "podlb.io/aws-target-groups"}}
	return ParseService(service(ann), "c1", []providers.Provider{aws})
}

// stubProvider completes fakeProvider into a providers.Provider; the
// cloud methods are never called by ParseService.
type stubProvider struct{ fakeProvider }

func (stubProvider) Ensure(context.Context, *providers.Binding) (*providers.Group, error) {
	panic("unused")
}
func (stubProvider) Observe(context.Context, *providers.Group) ([]providers.Observed, error) {
	panic("unused")
}
func (stubProvider) Apply(context.Context, *providers.Group, providers.Plan) error { panic("unused") }
func (stubProvider) Release(context.Context, providers.BindingKey, string, []providers.TargetKey) error {
	panic("unused")
}

func TestParseServiceResolvesPortsByNumberAndName(t *testing.T) {
	p := parse(t, map[string]string{"podlb.io/aws-target-groups": `{"80": {"group": "a"}, "metrics": {"group": "b"}, "dns": {"group": "c"}}`})
	if len(p.Problems) != 0 {
		t.Fatalf("problems: %v", p.Problems)
	}
	if !p.Annotated || len(p.Bindings) != 3 {
		t.Fatalf("got %d bindings, annotated=%v", len(p.Bindings), p.Annotated)
	}
	byPort := map[int32]*providers.Binding{}
	for _, b := range p.Bindings {
		byPort[b.Key.Port] = b
	}
	if b := byPort[80]; b.PortName != "http" || b.TargetPort != 8080 || b.Protocol != "TCP" || b.Mode != providers.ReadyWhenHealthy {
		t.Errorf("port 80: %+v", b)
	}
	if b := byPort[9090]; b.PortName != "metrics" || b.TargetPort != 0 {
		t.Errorf("named target port should resolve per pod: %+v", b)
	}
	if b := byPort[53]; b.Protocol != "UDP" || b.TargetPort != 53 {
		t.Errorf("unset targetPort defaults to port: %+v", b)
	}
	if k := byPort[80].Key; k != (providers.BindingKey{Namespace: "shop", Service: "web", Provider: "aws", Port: 80}) {
		t.Errorf("key %v", k)
	}
}

func TestParseServiceProblemsNameTheField(t *testing.T) {
	cases := []struct {
		ann       string
		field     string
		substr    string
		wantBound int
		// kept: the port stays bound despite the problem, so it must not
		// hold gates.
		kept bool
	}{
		{`{"80": `, `podlb.io/aws-target-groups`, "malformed JSON", 0, false},
		{`[1,2]`, `podlb.io/aws-target-groups`, "malformed JSON", 0, false},
		{`null`, `podlb.io/aws-target-groups`, "got null", 0, false},
		{`{"80": {"group": "a"}} {}`, `podlb.io/aws-target-groups`, "not a JSON object", 0, false},
		{`{"8080": {"group": "a"}, "80": {"group": "b"}}`, `podlb.io/aws-target-groups["8080"]`, "no port 8080", 1, false},
		{`{"https": {"group": "a"}}`, `podlb.io/aws-target-groups["https"]`, `no port named "https"`, 0, false},
		{`{"80": {"group": ""}}`, `podlb.io/aws-target-groups["80"].group`, "must be set", 0, false},
		{`{"80": {"group": "a"}, "http": {"group": "b"}}`, `podlb.io/aws-target-groups["http"]`, "already bound", 1, true},
		// The first key's value is bad; the port is bound by the second.
		{`{"80": {"group": ""}, "http": {"group": "b"}}`, `podlb.io/aws-target-groups["80"].group`, "must be set", 1, true},
	}
	for _, c := range cases {
		p := parse(t, map[string]string{"podlb.io/aws-target-groups": c.ann})
		if len(p.Problems) != 1 {
			t.Errorf("%s: want 1 problem, got %v", c.ann, p.Problems)
			continue
		}
		pr := p.Problems[0]
		if pr.Field != c.field || !strings.Contains(pr.Message, c.substr) || pr.Provider != "aws" {
			t.Errorf("%s: got %q / %q, want field %q containing %q", c.ann, pr.Field, pr.Message, c.field, c.substr)
		}
		if len(p.Bindings) != c.wantBound {
			t.Errorf("%s: %d bindings survive, want %d", c.ann, len(p.Bindings), c.wantBound)
		}
		if pr.Kept != c.kept {
			t.Errorf("%s: problem kept %v, want %v", c.ann, pr.Kept, c.kept)
		}
		if !p.Annotated {
			t.Errorf("%s: a broken annotation still makes the Service podlb's", c.ann)
		}
	}
}

func TestParseServiceReadinessModeAndIgnoredClouds(t *testing.T) {
	p := parse(t, map[string]string{
		"podlb.io/aws-target-groups": `{"80": {"group": "a"}}`,
		"podlb.io/gcp-negs":          `{"80": {}}`,
		AnnotationReadiness:          "registered",
	})
	if p.Bindings[0].Mode != providers.ReadyWhenRegistered {
		t.Errorf("mode %q", p.Bindings[0].Mode)
	}
	if len(p.Ignored) != 1 || p.Ignored[0] != "podlb.io/gcp-negs" {
		t.Errorf("ignored %v", p.Ignored)
	}
	p = parse(t, map[string]string{"podlb.io/aws-target-groups": `{"80": {"group": "a"}}`, AnnotationReadiness: "sometimes"})
	if len(p.Problems) != 1 || p.Problems[0].Field != AnnotationReadiness || p.Problems[0].Provider != "" {
		t.Fatalf("problems %v", p.Problems)
	}
	if p.Bindings[0].Mode != providers.ReadyWhenHealthy {
		t.Errorf("bad mode falls back to healthy, got %q", p.Bindings[0].Mode)
	}
	if p := parse(t, map[string]string{"other": "x"}); p.Annotated || len(p.Bindings) != 0 {
		t.Errorf("unannotated service: %+v", p)
	}
}

func FuzzParseService(f *testing.F) {
	f.Add(`{"80": {"group": "a"}}`, "healthy")
	f.Add(`{"http": {"group": "a"}, "53": {"group": "b"}}`, "registered")
	f.Add(`{"": null}`, "")
	f.Add(`{"80": {"group": 1}}`, "x")
	f.Fuzz(func(t *testing.T, ann, mode string) {
		p := parse(t, map[string]string{"podlb.io/aws-target-groups": ann, AnnotationReadiness: mode})
		seen := map[int32]bool{}
		for _, b := range p.Bindings {
			if seen[b.Key.Port] {
				t.Fatalf("port %d bound twice", b.Key.Port)
			}
			seen[b.Key.Port] = true
		}
		checkProblemsBounded(t, p.Problems)
	})
}

// checkProblemsBounded fails for problems that grow with the input: each
// names its field, both stay short, and keys naming no port are summed
// up past a few.
func checkProblemsBounded(t *testing.T, problems []Problem) {
	t.Helper()
	unresolved := 0
	for _, pr := range problems {
		if pr.Field == "" || pr.Message == "" {
			t.Fatalf("problem without field or message: %+v", pr)
		}
		if len(pr.Field) > maxField || len(pr.Message) > providers.MaxMessage {
			t.Fatalf("problem of %d + %d bytes: %.200s", len(pr.Field), len(pr.Message), pr.String())
		}
		if pr.Port == 0 {
			unresolved++
		}
	}
	if unresolved > maxUnresolved+2 {
		t.Fatalf("%d problems without a port: %v", unresolved, problems)
	}
}

func TestHugeAndManyKeyedAnnotationsGiveFewSmallProblems(t *testing.T) {
	huge := strings.Repeat("ж", 100000)
	var many strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&many, `"p%d~": {}, `, i)
	}
	for name, ann := range map[string]string{
		"huge value":         `{"http": {"group": "` + huge + `"}}`,
		"huge key":           `{"` + huge + `": {"group": "a"}}`,
		"thousands of keys":  `{` + many.String() + `"http": {"group": "a"}}`,
		"huge readiness too": `{"http": {"group": 1}}`,
	} {
		p := parse(t, map[string]string{"podlb.io/aws-target-groups": ann, AnnotationReadiness: huge})
		if len(p.Problems) == 0 {
			t.Errorf("%s: no problem", name)
		}
		checkProblemsBounded(t, p.Problems)
	}
	p := parse(t, map[string]string{"podlb.io/aws-target-groups": `{` + many.String() + `"http": {"group": "a"}}`})
	if last := p.Problems[len(p.Problems)-1]; len(p.Problems) != maxUnresolved+1 || last.Message != "4997 more keys name no port of the Service" {
		t.Errorf("thousands of keys: %d problems, the last %q", len(p.Problems), last)
	}
	if len(p.Bindings) != 1 {
		t.Errorf("the valid entry among thousands of keys: %d bindings", len(p.Bindings))
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func tgt(addr string, port int32) providers.Target {
	return providers.Target{IP: ip(addr), Port: port}
}

func desired(ts ...providers.Target) []Desired {
	out := make([]Desired, len(ts))
	for i, t := range ts {
		out[i] = Desired{Target: t, UID: types.UID(fmt.Sprint(i))}
	}
	return out
}

func obs(t providers.Target, s providers.State) providers.Observed {
	return providers.Observed{Target: t, State: s}
}

func TestComputePlanRegistersMissingAndDeregistersOnlyOurs(t *testing.T) {
	a, b, c, d := tgt("10.0.0.1", 80), tgt("10.0.0.2", 80), tgt("10.0.0.3", 80), tgt("10.0.0.4", 80)
	observed := []providers.Observed{obs(b, providers.Healthy), obs(c, providers.Healthy), obs(d, providers.Pending)}

	// Shared group: c is ours (ledger), d belongs to someone else.
	plan := ComputePlan(desired(a, b), observed, false, map[providers.TargetKey]types.UID{c.Key(): ""})
	if len(plan.Register) != 1 || plan.Register[0].Key() != a.Key() {
		t.Errorf("register %v", plan.Register)
	}
	if len(plan.Deregister) != 1 || plan.Deregister[0].Key() != c.Key() {
		t.Errorf("deregister %v: a shared group's foreign targets must stay", plan.Deregister)
	}

	// Owned group: everything unwanted goes.
	plan = ComputePlan(desired(a, b), observed, true, nil)
	if len(plan.Deregister) != 2 {
		t.Errorf("owned group deregister %v", plan.Deregister)
	}
}

func TestComputePlanDraining(t *testing.T) {
	a, b := tgt("10.0.0.1", 80), tgt("10.0.0.2", 80)
	observed := []providers.Observed{obs(a, providers.Draining), obs(b, providers.Draining)}
	plan := ComputePlan(desired(a), observed, true, nil)
	if len(plan.Register) != 1 || plan.Register[0].Key() != a.Key() {
		t.Errorf("a desired draining target is registered again: %v", plan.Register)
	}
	if len(plan.Deregister) != 0 {
		t.Errorf("draining targets are already leaving: %v", plan.Deregister)
	}
	if p := ComputePlan(desired(b), []providers.Observed{obs(b, providers.Healthy)}, true, nil); !p.Empty() {
		t.Errorf("steady state must plan nothing: %+v", p)
	}
}

func TestComputePlanSameIPOtherPort(t *testing.T) {
	a80, a81 := tgt("10.0.0.1", 80), tgt("10.0.0.1", 81)
	plan := ComputePlan(desired(a81), []providers.Observed{obs(a80, providers.Healthy)}, true, nil)
	if len(plan.Register) != 1 || len(plan.Deregister) != 1 || plan.Register[0].Port != 81 || plan.Deregister[0].Port != 80 {
		t.Errorf("plan %+v", plan)
	}
}

func ptr[T any](v T) *T { return &v }

func pod(name string, uid string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withGate(p *corev1.Pod) {
	p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: GateConditionType})
}

func withCondition(t corev1.PodConditionType, s corev1.ConditionStatus) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: t, Status: s})
	}
}

func endpoint(podName, uid, addr string, ready, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(ready), Terminating: ptr(terminating)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: podName, UID: types.UID(uid)},
		NodeName:   ptr("node-a"),
		Zone:       ptr("zone-a"),
	}
}

func TestDesiredTargets(t *testing.T) {
	ready := withCondition(corev1.PodReady, corev1.ConditionTrue)
	pods := map[string]*corev1.Pod{
		"ready":       pod("ready", "u1", ready),
		"gated":       pod("gated", "u2", withGate, withCondition(corev1.ContainersReady, corev1.ConditionTrue)),
		"starting":    pod("starting", "u3", withGate, withCondition(corev1.ContainersReady, corev1.ConditionFalse)),
		"terminating": pod("terminating", "u4"),
		"othergate": pod("othergate", "u5", withGate, withCondition(corev1.ContainersReady, corev1.ConditionTrue),
			func(p *corev1.Pod) {
				p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: "example.com/other"})
			}),
		"deleting": pod("deleting", "u6", ready, func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }),
		"replaced": pod("replaced", "new-uid", ready),
		"nogate":   pod("nogate", "u8", withCondition(corev1.ContainersReady, corev1.ConditionTrue)),
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-1"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}, {Name: ptr("metrics"), Port: ptr(int32(9100))}},
		Endpoints: []discoveryv1.Endpoint{
			endpoint("ready", "u1", "127.1.0.1", true, false),
			endpoint("gated", "u2", "127.1.0.2", false, false),
			endpoint("starting", "u3", "127.1.0.3", false, false),
			endpoint("terminating", "u4", "127.1.0.4", false, true),
			endpoint("othergate", "u5", "127.1.0.5", false, false),
			endpoint("deleting", "u6", "127.1.0.6", true, false),
			endpoint("replaced", "old-uid", "127.1.0.7", true, false),
			endpoint("nogate", "u8", "127.1.0.8", false, false),
			endpoint("ready", "u1", "127.1.0.1", true, false), // duplicate across slices
		},
	}
	look := Lookups{
		Pod:  func(ns, name string) *corev1.Pod { return pods[name] },
		Node: func(name string) (NodeInfo, bool) { return NodeInfo{Zone: "zone-x", Instance: "vm-" + name}, true },
	}
	b := &providers.Binding{PortName: "http"}
	got := DesiredTargets(b, []*Slice{SliceOf(slice)}, look)
	var names []string
	for _, d := range got {
		names = append(names, d.Pod.Name)
		if d.Port != 8080 || d.Zone != "zone-a" || d.Instance != "vm-node-a" || d.Node != "node-a" {
			t.Errorf("%s: %+v", d.Pod.Name, d.Target)
		}
	}
	if strings.Join(names, ",") != "ready,gated" {
		t.Errorf("desired pods %v, want ready,gated", names)
	}
	// The terminating endpoint and the pod being deleted are told of, to
	// learn when their pods are killed; no other endpoint is.
	var stopping []string
	look.Stopping = func(k providers.TargetKey, p *corev1.Pod) { stopping = append(stopping, p.Name+"@"+k.String()) }
	DesiredTargets(b, []*Slice{SliceOf(slice)}, look)
	if strings.Join(stopping, ",") != "terminating@127.1.0.4:8080,deleting@127.1.0.6:8080" {
		t.Errorf("stopping endpoints %v, want terminating and deleting at their targets", stopping)
	}
	look.Stopping = nil
	b.PortName = "metrics"
	if got := DesiredTargets(b, []*Slice{SliceOf(slice)}, look); len(got) != 2 || got[0].Port != 9100 {
		t.Errorf("named port resolves through the slice: %+v", got)
	}
	b.PortName = "absent"
	if got := DesiredTargets(b, []*Slice{SliceOf(slice)}, look); len(got) != 0 {
		t.Errorf("port missing from the slice: %+v", got)
	}
}

// Whether a pod is a target follows the pod's own conditions: with
// publishNotReadyAddresses every endpoint is marked ready, yet a pod whose
// probes fail must not be registered or kept.
func TestDesiredTargetsFollowPodConditionsNotSliceReady(t *testing.T) {
	pods := map[string]*corev1.Pod{
		"probing":   pod("probing", "u1", withCondition(corev1.ContainersReady, corev1.ConditionFalse), withCondition(corev1.PodReady, corev1.ConditionFalse)),
		"failing":   pod("failing", "u2", withGate, withCondition(corev1.ContainersReady, corev1.ConditionFalse), withCondition(corev1.PodReady, corev1.ConditionFalse)),
		"serving":   pod("serving", "u3", withCondition(corev1.ContainersReady, corev1.ConditionTrue), withCondition(corev1.PodReady, corev1.ConditionTrue)),
		"onleaving": pod("onleaving", "u4", withCondition(corev1.PodReady, corev1.ConditionTrue), func(p *corev1.Pod) { p.Spec.NodeName = "leaving" }),
		"onmissing": pod("onmissing", "u5", withCondition(corev1.PodReady, corev1.ConditionTrue), func(p *corev1.Pod) { p.Spec.NodeName = "missing" }),
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-1"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
	}
	for i, name := range []string{"probing", "failing", "serving", "onleaving", "onmissing"} {
		ep := endpoint(name, string(pods[name].UID), fmt.Sprintf("127.1.0.%d", i+1), true, false) // publishNotReadyAddresses
		ep.NodeName = ptr(pods[name].Spec.NodeName)
		slice.Endpoints = append(slice.Endpoints, ep)
	}
	look := Lookups{
		Pod: func(ns, name string) *corev1.Pod { return pods[name] },
		Node: func(name string) (NodeInfo, bool) {
			switch name {
			case "leaving":
				return NodeInfo{Zone: "zone-a", Instance: "vm", Deleting: true}, true
			case "missing":
				return NodeInfo{}, false
			}
			return NodeInfo{Zone: "zone-a", Instance: "vm"}, true
		},
	}
	got := DesiredTargets(&providers.Binding{PortName: "http"}, []*Slice{SliceOf(slice)}, look)
	if len(got) != 1 || got[0].Pod.Name != "serving" {
		t.Errorf("desired %+v, want only the serving pod on a live node", got)
	}
}

func TestNodeInfoOf(t *testing.T) {
	cases := []struct {
		providerID, label string
		want              NodeInfo
	}{
		{"aws:///us-east-1a/i-0abc", "", NodeInfo{Zone: "us-east-1a", Instance: "i-0abc"}},
		{"gce://proj/us-central1-b/vm-7", "", NodeInfo{Zone: "us-central1-b", Instance: "vm-7"}},
		{"gce://proj/us-central1-b/vm-7", "override", NodeInfo{Zone: "override", Instance: "vm-7"}},
		{"", "z", NodeInfo{Zone: "z", Instance: "n1"}},
	}
	for _, c := range cases {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{}}, Spec: corev1.NodeSpec{ProviderID: c.providerID}}
		if c.label != "" {
			n.Labels[corev1.LabelTopologyZone] = c.label
		}
		if got := NodeInfoOf(n); got != c.want {
			t.Errorf("%q/%q: got %+v want %+v", c.providerID, c.label, got, c.want)
		}
	}
}

func TestStopDelaySeconds(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr(int64(20)), Containers: []corev1.Container{
		{Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 15}}}},
	}}}
	if got := StopDelaySeconds(p); got != 15 {
		t.Errorf("sleep action: %d", got)
	}
	p.Spec.Containers[0].Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "sleep 40"}}}
	if got := StopDelaySeconds(p); got != 20 {
		t.Errorf("capped by grace: %d", got)
	}
	p.Spec.Containers[0].Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sleep", "7"}}}
	if got := StopDelaySeconds(p); got != 0 {
		t.Errorf("only the sleep binary by name counts: %d", got)
	}
	p.Spec.Containers[0].Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "7"}}}
	if got := StopDelaySeconds(p); got != 7 {
		t.Errorf("exec sleep: %d", got)
	}
}

func TestBackoffIsCapped(t *testing.T) {
	prev := backoff(1, time.Minute)
	if prev != time.Second {
		t.Fatalf("first retry %v", prev)
	}
	for n := 2; n < 40; n++ {
		d := backoff(n, time.Minute)
		if d < prev || d > time.Minute {
			t.Fatalf("backoff(%d) = %v after %v", n, d, prev)
		}
		prev = d
	}
	if prev != time.Minute {
		t.Errorf("ceiling %v", prev)
	}
}

// Health a target had before it was registered for the pod that wants it
// now (IP:port reuse, an earlier registration lost in a restart) counts
// only once the group has had its judge delay past the pod's containers
// turning ready; health of a target podlb registered for this pod counts
// from the first observation after the registration. A dual-stack pod is
// healthy only when all of its targets are.
func TestSummarizeCountsHealthOnlyForThePodThatWantsIt(t *testing.T) {
	now := time.Unix(10_000, 0)
	ready := now.Add(-5 * time.Second)
	newPod := pod("web-new", "new", withCondition(corev1.ContainersReady, corev1.ConditionTrue), func(p *corev1.Pod) {
		p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(ready)
	})
	v4 := providers.Target{IP: netip.MustParseAddr("10.0.0.7"), Port: 8080}
	v6 := providers.Target{IP: netip.MustParseAddr("fd00::7"), Port: 8080}
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "aws", Port: 80}
	healthy := func(ts ...providers.Target) []providers.Observed {
		var out []providers.Observed
		for _, t := range ts {
			out = append(out, providers.Observed{Target: t, State: providers.Healthy, CloudState: "healthy"})
		}
		return out
	}
	mkPass := func(judge time.Duration, ledger map[providers.TargetKey]types.UID, ts ...providers.Target) *pass {
		ps := &pass{key: key, group: &providers.Group{Ref: "g", Display: "g", Serving: true, JudgeDelay: judge},
			entry: &LedgerEntry{Ref: "g", Targets: ledger}, pods: map[types.UID]*corev1.Pod{"new": newPod}}
		for _, t := range ts {
			ps.desired = append(ps.desired, Desired{Target: t, Pod: types.NamespacedName{Namespace: "shop", Name: "web-new"}, UID: "new"})
		}
		return ps
	}
	r := &BindingReconciler{Now: func() time.Time { return now }}
	r.book(key, "g")

	// Registered for an earlier pod: the group judges the new one within
	// 10 s of its containers turning ready, 5 s ago.
	ps := mkPass(10*time.Second, map[providers.TargetKey]types.UID{v4.Key(): "old"}, v4)
	h, _ := r.summarize(ps, healthy(v4), now)
	if got := h.Pods["new"]; got.State != providers.Pending || !strings.Contains(got.Reason, "earlier pod") {
		t.Errorf("inherited health counted early: %+v", got)
	}
	h, _ = r.summarize(ps, healthy(v4), now.Add(6*time.Second))
	if got := h.Pods["new"]; got.State != providers.Healthy {
		t.Errorf("inherited target judged by now: %+v", got)
	}
	if ps.entry.Targets[v4.Key()] != "new" {
		t.Errorf("the ledger should now record the target for the new pod: %v", ps.entry.Targets)
	}

	// Registered by this process for this pod: observations after the
	// registration count, the one the registration raced does not.
	ps = mkPass(time.Hour, map[providers.TargetKey]types.UID{v4.Key(): "new"}, v4)
	r.books[key].at[v4.Key()] = registration{uid: "new", at: now}
	if h, _ := r.summarize(ps, healthy(v4), now.Add(-time.Millisecond)); h.Pods["new"].State == providers.Healthy {
		t.Errorf("an observation from before the registration counted")
	}
	if h, _ := r.summarize(ps, healthy(v4), now.Add(time.Millisecond)); h.Pods["new"].State != providers.Healthy {
		t.Errorf("an observation after the registration did not count")
	}

	// Dual-stack: one target missing or pending holds the pod.
	ps = mkPass(time.Hour, map[providers.TargetKey]types.UID{v4.Key(): "new", v6.Key(): "new"}, v4, v6)
	delete(r.books[key].at, v4.Key())
	if h, _ := r.summarize(ps, healthy(v4), now); len(h.Pods) != 0 {
		t.Errorf("a pod with one of two targets registered counted as registered: %+v", h.Pods)
	}
	obs := healthy(v4)
	obs = append(obs, providers.Observed{Target: v6, State: providers.Pending, CloudState: "initial"})
	if h, _ := r.summarize(ps, obs, now); h.Pods["new"].State != providers.Pending {
		t.Errorf("a pod with one pending target counted as %s", h.Pods["new"].State)
	}
	if h, _ := r.summarize(ps, healthy(v4, v6), now); h.Pods["new"].State != providers.Healthy {
		t.Errorf("both targets healthy: %s", h.Pods["new"].State)
	}
}
