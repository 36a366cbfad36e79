package controller

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podlb/podlb/targets"
)

// fullPod is a pod as the API server sends it for a gated web Deployment:
// what SlimPod must shrink.
func fullPod(i int) *corev1.Pod {
	now := metav1.Now()
	cond := func(t corev1.PodConditionType, reason, msg string) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: reason, Message: msg}
	}
	ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("web-%04d-7d9f8b6c5d-%05d", i/10, i), Namespace: "shop", UID: types.UID(fmt.Sprintf("6f1c2a4e-0000-4000-8000-%012d", i)),
			ResourceVersion: fmt.Sprint(100000 + i), GenerateName: fmt.Sprintf("web-%04d-7d9f8b6c5d-", i/10),
			Labels:          map[string]string{"app": fmt.Sprintf("web-%04d", i/10), "pod-template-hash": "7d9f8b6c5d", "tier": "frontend"},
			Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-12-01T10:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: fmt.Sprintf("web-%04d-7d9f8b6c5d", i/10), UID: "1b2c", Controller: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{
			NodeName:                      fmt.Sprintf("node-%03d", i%240),
			ReadinessGates:                []corev1.PodReadinessGate{{ConditionType: targets.GateConditionType}},
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Containers: []corev1.Container{{
				Name: "web", Image: "registry.example.com/shop/web:1.42.0",
				Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
				Env:            []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
				Resources:      corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstrPort(8080)}}, PeriodSeconds: 2},
				Lifecycle:      &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}},
				VolumeMounts:   []corev1.VolumeMount{{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}}}}}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "192.168.1.1", StartTime: &now, QOSClass: corev1.PodQOSBurstable,
			Conditions: []corev1.PodCondition{
				cond(corev1.PodReadyToStartContainers, "", ""), cond(corev1.PodInitialized, "", ""),
				cond(corev1.PodReady, "", ""), cond(corev1.ContainersReady, "", ""), cond(corev1.PodScheduled, "", ""),
				cond(targets.GateConditionType, "Healthy", "healthy in every load balancer: aws target group k8s-shop-web-80 (3 of 3 healthy)"),
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Ready: true, Image: "registry.example.com/shop/web:1.42.0", ImageID: "registry.example.com/shop/web@sha256:0123456789abcdef", ContainerID: "containerd://0123456789abcdef"}},
		},
	}
}

func TestSlimPodKeepsWhatPodlbReads(t *testing.T) {
	full := fullPod(7)
	full.Spec.ReadinessGates = append(full.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: "example.com/warm"})
	full.Status.Conditions = append(full.Status.Conditions, corev1.PodCondition{Type: "example.com/warm", Status: corev1.ConditionFalse})
	slim := cachedCopy(t, full)
	var types []corev1.PodConditionType
	for _, c := range slim.Status.Conditions {
		types = append(types, c.Type)
	}
	want := []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady, targets.GateConditionType, "example.com/warm"}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Errorf("conditions kept: %v, want %v", types, want)
	}
	gate := targets.PodCondition(slim, targets.GateConditionType)
	if gate.Reason != "Healthy" || gate.Message == "" || gate.LastProbeTime.IsZero() {
		t.Errorf("the gate's reason, message and last write must stay (the gate compares and paces them): %+v", gate)
	}
	if c := targets.PodCondition(slim, corev1.ContainersReady); c.LastTransitionTime.IsZero() || c.Status != corev1.ConditionTrue {
		t.Errorf("ContainersReady lost its status or transition time: %+v", c)
	}
	if targets.HeldOnlyByGate(slim) {
		t.Error("a pod whose other readiness gate is False must not count as held only by podlb's gate")
	}
	if slim.Spec.NodeName != full.Spec.NodeName || slim.Status.PodIP != full.Status.PodIP || slim.Labels["app"] != full.Labels["app"] ||
		slim.UID != full.UID || *slim.Spec.TerminationGracePeriodSeconds != 30 || slim.Spec.Containers[0].Lifecycle.PreStop.Sleep.Seconds != 5 {
		t.Errorf("slim pod lost a field podlb reads: %+v", slim)
	}
	if slim.Status.PodIPs != nil || slim.OwnerReferences != nil || slim.Spec.Volumes != nil || slim.Status.ContainerStatuses != nil {
		t.Errorf("slim pod kept what podlb never reads: %+v", slim)
	}
	noHook := fullPod(9)
	noHook.Spec.Containers = append(noHook.Spec.Containers, corev1.Container{Name: "sidecar"})
	if cs := cachedCopy(t, noHook).Spec.Containers; len(cs) != 1 || cs[0].Name != "web" {
		t.Errorf("containers kept: %+v, want only the one with a preStop hook", cs)
	}
	dual := fullPod(8)
	dual.Status.PodIPs = append(dual.Status.PodIPs, corev1.PodIP{IP: "fd00::8"})
	if len(cachedCopy(t, dual).Status.PodIPs) != 2 {
		t.Error("a dual-stack pod's PodIPs must stay")
	}
}

// cachedCopy is p as the cache's Get and List hand it out: slimmed into
// a CachedPod, then copied.
func cachedCopy(t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := SlimPod(p)
	if err != nil {
		t.Fatal(err)
	}
	out, ok := got.(*CachedPod).DeepCopyObject().(*corev1.Pod)
	if !ok {
		t.Fatalf("a cached pod's copy is %T, not the *corev1.Pod readers ask for", got.(*CachedPod).DeepCopyObject())
	}
	return out
}

// What the cache hands out is the reader's own, and a view filled for
// an event handler or a metric reads the same as the copy.
func TestCachedPodCopiesShareNothingAndViewsReadTheSame(t *testing.T) {
	full := fullPod(3)
	got, _ := SlimPod(full)
	cached := got.(*CachedPod)
	first := cached.Pod()
	first.Labels["app"] = "changed"
	first.Status.Conditions[0].Status = corev1.ConditionFalse
	*first.Spec.TerminationGracePeriodSeconds = 1
	first.Spec.Containers[0].Lifecycle.PreStop.Sleep.Seconds = 99
	second := cached.Pod()
	if second.Labels["app"] != full.Labels["app"] || second.Status.Conditions[0].Status != corev1.ConditionTrue ||
		*second.Spec.TerminationGracePeriodSeconds != 30 || second.Spec.Containers[0].Lifecycle.PreStop.Sleep.Seconds != 5 {
		t.Fatalf("changing a copy changed the cache: %+v", second)
	}
	// A reused buffer holding another pod's fields takes this one's.
	buf := *fullPod(4)
	view, ok := podView(cached, &buf)
	if !ok {
		t.Fatal("podView did not take a CachedPod")
	}
	if !equality.Semantic.DeepEqual(view, second) {
		t.Errorf("the view and the copy differ:\nview %+v\ncopy %+v", view, second)
	}
}

// fullSlice is an EndpointSlice as the API server sends it for a
// Service of endpoints pods: what SlimEndpointSlice must shrink.
func fullSlice(i, endpoints int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%04d-abcde", i), Namespace: "shop", UID: types.UID(fmt.Sprintf("5e1f0c2a-0000-4000-8000-%012d", i)),
			ResourceVersion: "123456", Generation: 3,
			Labels:          map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("svc-%04d", i), discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: fmt.Sprintf("svc-%04d", i), UID: "u", Controller: ptr.To(true)}}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j := range endpoints {
		name := fmt.Sprintf("svc-%04d-6d4cf56db6-%05d", i, j)
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("127.%d.%d.%d", i/250, i%250, j+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(fmt.Sprintf("node-%03d", (i+j)%240)), Zone: ptr.To(fmt.Sprintf("zone-%c", 'a'+(i+j)%3)),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: name,
				UID: types.UID(fmt.Sprintf("9b2d7e4f-%04d-4000-8000-%012d", i, j))},
		})
	}
	return s
}

// The cache keeps of a slice what desired targets read, in a form the
// binding pass reads as it is; its endpoints that are not pods with an
// address go. What the cache's Get and List hand out is an EndpointSlice
// holding the same, sharing nothing with the cache.
func TestSlimEndpointSliceKeepsWhatDesiredTargetsRead(t *testing.T) {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abcde", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{"10.0.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)},
			NodeName: ptr.To("node-1"), Zone: ptr.To("us-east-1a"), Hostname: ptr.To("web-7"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-7", UID: "u7", ResourceVersion: "42"},
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "us-east-1a"}}},
		}, {
			Addresses: []string{"10.0.0.8"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-8", UID: "u8"},
		}, {
			Addresses: []string{"10.0.0.9"}, TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "node-9"},
		}, {
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-10", UID: "u10"},
		}, {
			Addresses: []string{"10.0.0.11"},
		}},
	}
	got, err := SlimEndpointSlice(s)
	if err != nil {
		t.Fatal(err)
	}
	cached, ok := got.(*CachedSlice)
	if !ok {
		t.Fatalf("the cache holds a %T", got)
	}
	if cached.Labels[discoveryv1.LabelServiceName] != "web" || cached.Namespace != "shop" || cached.Name != "web-abcde" {
		t.Errorf("slim slice lost its metadata: %+v", cached.ObjectMeta)
	}
	sl := cached.slice
	want := []targets.SliceEndpoint{
		{Address: netip.MustParseAddr("10.0.0.7"), Pod: "web-7", UID: "u7", Node: "node-1", Zone: "us-east-1a", Terminating: true},
		{Address: netip.MustParseAddr("10.0.0.8"), Pod: "web-8", UID: "u8"},
	}
	if sl.Namespace != "shop" || sl.AddressType != discoveryv1.AddressTypeIPv4 || len(sl.Ports) != 1 || *sl.Ports[0].Port != 8080 ||
		!reflect.DeepEqual(sl.Endpoints, want) || cap(sl.Endpoints) != len(want) {
		t.Errorf("slim slice %+v, want the pod endpoints %+v and the port", sl, want)
	}

	copied, ok := cached.DeepCopyObject().(*discoveryv1.EndpointSlice)
	if !ok {
		t.Fatalf("DeepCopyObject gave a %T", cached.DeepCopyObject())
	}
	if len(copied.Endpoints) != 2 || copied.Labels[discoveryv1.LabelServiceName] != "web" || *copied.Ports[0].Port != 8080 {
		t.Fatalf("the copy %+v", copied)
	}
	if again := targets.SliceOf(copied); !reflect.DeepEqual(again, sl) {
		t.Errorf("the copy reads as %+v, the cache as %+v", again, sl)
	}
	copied.Labels["x"] = "y"
	*copied.Ports[0].Port = 1
	if cached.Labels["x"] != "" || *sl.Ports[0].Port != 8080 {
		t.Errorf("the copy shares with the cache")
	}
}

// The binding pass finds a Service's slices through the cache's index,
// as the cache holds them, and no other Service's nor another
// namespace's of the same name.
func TestCachedReaderFindsAServicesSlices(t *testing.T) {
	slices := toolscache.NewSharedIndexInformer(nil, &discoveryv1.EndpointSlice{}, 0, targets.SliceIndexers())
	fake := &informertest.FakeInformers{InformersByGVK: map[schema.GroupVersionKind]toolscache.SharedIndexInformer{
		discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"): slices,
	}}
	var held []*CachedSlice
	for i, s := range []*discoveryv1.EndpointSlice{fullSlice(1, 3), fullSlice(1, 2), fullSlice(2, 4), fullSlice(1, 5)} {
		s.Name = fmt.Sprintf("%s-%d", s.Name, i)
		if i == 1 {
			s.Labels[discoveryv1.LabelServiceName] = "svc-0001"
		}
		if i == 3 {
			s.Namespace = "other"
		}
		obj, _ := SlimEndpointSlice(s)
		held = append(held, obj.(*CachedSlice))
		if err := slices.GetStore().Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	got, err := newCachedReader(fake).Slices(context.Background(), "shop", "svc-0001")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || (got[0] != held[0].slice && got[0] != held[1].slice) || (got[1] != held[0].slice && got[1] != held[1].slice) || got[0] == got[1] {
		t.Fatalf("slices of shop/svc-0001: %d, want the cache's own two", len(got))
	}
}

// BenchmarkCachedSliceBytes reports the heap a cached EndpointSlice
// endpoint holds, decoded from protobuf as the informer receives it,
// with and without SlimEndpointSlice. The steady-state benchmark's
// 10,000 pods, ten a slice, multiply it.
func BenchmarkCachedSliceBytes(b *testing.B) {
	const slices, per = 1000, 10
	benchmarkCachedBytes(b, slices, per, "B/endpoint", func(i int) ([]byte, error) { return fullSlice(i, per).Marshal() },
		func(data []byte) (any, error) {
			s := &discoveryv1.EndpointSlice{}
			return s, s.Unmarshal(data)
		}, SlimEndpointSlice)
}

// BenchmarkCachedPodBytes reports the heap a cached pod holds, decoded
// from protobuf as the informer receives it, with and without SlimPod.
// The steady-state benchmark's 10,000 pods multiply it.
func BenchmarkCachedPodBytes(b *testing.B) {
	benchmarkCachedBytes(b, 5000, 1, "B/pod", func(i int) ([]byte, error) { return fullPod(i).Marshal() },
		func(data []byte) (any, error) {
			p := &corev1.Pod{}
			return p, p.Unmarshal(data)
		}, SlimPod)
}

// benchmarkCachedBytes decodes n objects from their wire form (each
// holding per of what unit counts) and reports the heap they hold per
// unit, as decoded ("full") and after slim, the cache's transform.
func benchmarkCachedBytes(b *testing.B, n, per int, unit string, wire func(int) ([]byte, error), decode func([]byte) (any, error), slim func(any) (any, error)) {
	data := make([][]byte, n)
	for i := range data {
		var err error
		if data[i], err = wire(i); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		transform func(any) (any, error)
	}{{"full", func(o any) (any, error) { return o, nil }}, {"slim", slim}} {
		b.Run(tc.name, func(b *testing.B) {
			var bytes float64
			for range b.N {
				held := make([]any, 0, n)
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				for _, d := range data {
					obj, err := decode(d)
					if err != nil {
						b.Fatal(err)
					}
					o, err := tc.transform(obj)
					if err != nil {
						b.Fatal(err)
					}
					held = append(held, o)
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				bytes = float64(after.HeapAlloc-before.HeapAlloc) / float64(n*per)
				runtime.KeepAlive(held)
			}
			b.ReportMetric(bytes, unit)
		})
	}
}

func intstrPort(p int32) intstr.IntOrString { return intstr.FromInt32(p) }

// The pods of one ReplicaSet share one label map in the cache, pods
// with other labels do not, and a set goes with the last pod holding it.
func TestPodsWithEqualLabelsShareOneMap(t *testing.T) {
	slim := func(p *corev1.Pod) *CachedPod {
		got, err := SlimPod(p)
		if err != nil {
			t.Fatal(err)
		}
		return got.(*CachedPod)
	}
	a, b := slim(fullPod(20)), slim(fullPod(21)) // both app=web-0002
	other := slim(fullPod(30))
	more := fullPod(22)
	more.Labels["canary"] = "true"
	extra := slim(more)
	if a.labels == nil || a.labels != b.labels {
		t.Fatalf("pods with equal labels hold %p and %p, want one shared set", a.labels, b.labels)
	}
	if other.labels == a.labels || extra.labels == a.labels {
		t.Fatal("pods with other labels share a set with pods they differ from")
	}
	if a.Labels["app"] != "web-0002" || len(a.Labels) != 3 || other.Labels["app"] != "web-0003" || extra.Labels["canary"] != "true" || len(extra.Labels) != 4 {
		t.Fatalf("labels read through the shared sets: %v, %v, %v", a.Labels, other.Labels, extra.Labels)
	}
	if p := cachedCopy(t, fullPod(23)); p.Labels["app"] != "web-0002" {
		t.Fatalf("a copy's labels: %v", p.Labels)
	}

	key := labelsKey(fullPod(20).Labels)
	runtime.KeepAlive(b)
	a, b = nil, nil
	// Cleanups run after a collection finds the set unreachable.
	for i := 0; i < 100; i++ {
		runtime.GC()
		if _, held := labelSets.Load(key); !held {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, held := labelSets.Load(key); held {
		t.Fatal("the label set outlived every pod holding it")
	}
	if again := slim(fullPod(24)); again.Labels["app"] != "web-0002" || again.labels == other.labels {
		t.Fatalf("a pod after the set went: %v", again.Labels)
	}
	runtime.KeepAlive(other)
	runtime.KeepAlive(extra)
}

// countingInformers counts how often the informers are looked up.
type countingInformers struct {
	*informertest.FakeInformers
	lookups int
}

func (c *countingInformers) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	c.lookups++
	return c.FakeInformers.GetInformer(ctx, obj, opts...)
}

// A binding pass reads pods and nodes from the informers' stores as the
// cache holds them, looking each store up once, not once per read.
func TestCachedReaderReadsTheStoresLookingThemUpOnce(t *testing.T) {
	pods := toolscache.NewSharedIndexInformer(nil, &corev1.Pod{}, 0, toolscache.Indexers{})
	nodes := toolscache.NewSharedIndexInformer(nil, &corev1.Node{}, 0, toolscache.Indexers{})
	fake := &countingInformers{FakeInformers: &informertest.FakeInformers{InformersByGVK: map[schema.GroupVersionKind]toolscache.SharedIndexInformer{
		corev1.SchemeGroupVersion.WithKind("Pod"):  pods,
		corev1.SchemeGroupVersion.WithKind("Node"): nodes,
	}}}
	full := fullPod(5)
	cached, _ := SlimPod(full)
	if err := pods.GetStore().Add(cached); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: full.Spec.NodeName}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-0abc"}}
	if err := nodes.GetStore().Add(node); err != nil {
		t.Fatal(err)
	}
	r := newCachedReader(fake)
	ctx := context.Background()
	for range 3 {
		p, ok := r.Pod(ctx, full.Namespace, full.Name)
		if !ok || p.UID != full.UID || p.Status.PodIP != full.Status.PodIP || p.Labels["app"] != full.Labels["app"] {
			t.Fatalf("pod read: %v %+v", ok, p)
		}
		if n, ok := r.Node(ctx, full.Spec.NodeName); !ok || n != node {
			t.Fatalf("node read: %v, want the store's own %p, got %p", ok, node, n)
		}
	}
	if _, ok := r.Pod(ctx, full.Namespace, "gone"); ok {
		t.Fatal("a pod not in the store was found")
	}
	if _, ok := r.Node(ctx, "gone"); ok {
		t.Fatal("a node not in the store was found")
	}
	if fake.lookups != 2 {
		t.Fatalf("informers looked up %d times for 8 reads of two kinds, want 2", fake.lookups)
	}
}

// Services and Ingresses keep everything podlb reads or patches; the
// managed fields and client-side apply's copy of the object go.
func TestSlimObjectDropsManagedFieldsAndLastApplied(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "shop", ResourceVersion: "7", Finalizers: []string{targets.Finalizer},
			Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{
				corev1.LastAppliedConfigAnnotation: `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"}}`,
				targets.AnnotationStatus:           `{"bindings":[]}`,
				"example.com/owner":                "team-a",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
		},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	want := svc.DeepCopy()
	want.ManagedFields = nil
	delete(want.Annotations, corev1.LastAppliedConfigAnnotation)
	got, err := SlimObject(svc)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("slimmed Service:\n got %+v\nwant %+v", got.(*corev1.Service).ObjectMeta, want.ObjectMeta)
	}
	// Kinds without metadata pass through.
	if out, err := SlimObject("not an object"); out != "not an object" || err != nil {
		t.Fatalf("a value without metadata came back as %v, %v", out, err)
	}
}
