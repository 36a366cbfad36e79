package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

// Pod annotations NodeSim understands.
const (
	// AnnotationReadyAfter delays container readiness after start, e.g. "3s"
	// (default Options.ReadyAfter).
	AnnotationReadyAfter = "sim.podlb.io/ready-after"
	// AnnotationUnready "true" makes the containers fail their readiness
	// check: ContainersReady and Ready turn False and the backend answers
	// HTTP 503 (TCP connections are still accepted). Removing it, or
	// setting anything else, makes them ready again.
	AnnotationUnready = "sim.podlb.io/unready"
)

const (
	simWorkers           = 16
	defaultTerminationGP = 30 * time.Second
)

// NodeSim stands in for the kubelets of the cluster's nodes. For every pod
// bound to one of them it assigns an IP, serves a backend on the pod's TCP
// ports, writes the status a kubelet would write, and carries out graceful
// termination (preStop, drain, final delete).
type NodeSim struct {
	client     kubernetes.Interface
	logf       func(string, ...any)
	readyAfter time.Duration
	nodes      map[string]*simNode

	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[string]
	ctx      context.Context
	cancel   context.CancelFunc
	workers  sync.WaitGroup

	mu     sync.Mutex
	pods   map[string]*simPod // by namespace/name
	inUse  map[netip.Addr]string
	health map[string]bool // SetReady overrides, by namespace/name
	past   []PodLife       // the latest released pods, oldest first
}

type simNode struct {
	Node
	block  netip.Prefix
	cursor netip.Addr // next pod address to try: round-robin, like host-local IPAM
	// dead: the machine is gone (KillNode); nothing runs on it until
	// RestoreNode. Guarded by NodeSim.mu.
	dead bool
}

// simPod is the simulator's runtime state of one pod incarnation (UID).
type simPod struct {
	uid      types.UID
	name     string
	node     *simNode
	ip       netip.Addr // as reported; served on its loopback mirror
	backend  *backend   // nil when the pod has no TCP ports
	started  time.Time
	readyAt  time.Time
	ready    bool // last readiness computed, mirrored to the backend
	termAt   time.Time
	preStop  time.Time // end of the preStop hook
	killAt   time.Time // end of the grace period
	stopping bool      // backend draining
	finished time.Time // containers exited
	deleted  bool      // final delete sent
}

func startNodeSim(ctx context.Context, c *Cluster) (*NodeSim, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.UserAgent = "podlb-nodesim"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	s := &NodeSim{
		client:     cs,
		logf:       c.logf,
		readyAfter: c.opts.ReadyAfter,
		nodes:      map[string]*simNode{},
		pods:       map[string]*simPod{},
		inUse:      map[netip.Addr]string{},
		health:     map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 2*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodesim"}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	podsPerNode := 0
	for i, n := range c.Nodes {
		block := netip.MustParsePrefix(n.PodCIDR)
		s.nodes[n.Name] = &simNode{Node: n, block: block, cursor: block.Addr().Next()}
		podsPerNode = 1<<(32-block.Bits()) - 2
		if err := s.registerNode(ctx, n, c.nodeObject(n), i, podsPerNode); err != nil {
			s.stop()
			return nil, fmt.Errorf("register node %s: %w", n.Name, err)
		}
	}

	s.factory = informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "spec.nodeName!=" }))
	s.informer = s.factory.Core().V1().Pods().Informer()
	// Thousands of pods: drop what the simulator never reads.
	_ = s.informer.SetTransform(func(obj any) (any, error) {
		if pod, ok := obj.(*corev1.Pod); ok {
			pod.ManagedFields = nil
		}
		return obj, nil
	})
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	if _, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		s.stop()
		return nil, err
	}
	s.factory.Start(s.ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		s.stop()
		return nil, errors.New("node simulator: pod informer did not sync")
	}
	for range simWorkers {
		s.workers.Go(func() {
			for s.processNext() {
			}
		})
	}
	return s, nil
}

// registerNode creates the Node, reports it Ready and removes the not-ready
// taint that admission puts on new Nodes (the node lifecycle controller's
// job, which does not run here).
func (s *NodeSim) registerNode(ctx context.Context, n Node, node *corev1.Node, index, pods int) error {
	created, err := s.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("1000"),
		corev1.ResourceMemory:           resource.MustParse("4000Gi"),
		corev1.ResourcePods:             *resource.NewQuantity(int64(pods), resource.DecimalSI),
		corev1.ResourceEphemeralStorage: resource.MustParse("10Ti"),
	}
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.HostIP},
			{Type: corev1.NodeHostName, Address: node.Name},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          "v1.37.0-sim",
			ContainerRuntimeVersion: "sim://1",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
			OSImage:                 "podlb node simulator",
			MachineID:               fmt.Sprintf("sim-%d", index),
			SystemUUID:              fmt.Sprintf("sim-%d", index),
			BootID:                  fmt.Sprintf("sim-%d", index),
		},
	}
	if _, err := s.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := s.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var kept []corev1.Taint
		for _, t := range current.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(current.Spec.Taints) {
			return nil
		}
		current.Spec.Taints = kept
		_, err = s.client.CoreV1().Nodes().Update(ctx, current, metav1.UpdateOptions{})
		return err
	})
}

func (s *NodeSim) stop() {
	s.cancel()
	s.queue.ShutDown()
	s.workers.Wait()
	if s.factory != nil {
		s.factory.Shutdown()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, p := range s.pods {
		if p.backend != nil {
			p.backend.close()
		}
		delete(s.pods, key)
	}
}

func (s *NodeSim) processNext() bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	if err := s.sync(key); err != nil {
		if s.ctx.Err() != nil {
			return true
		}
		s.logf("nodesim: %s: %v", key, err)
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}

// sync moves one pod towards what its kubelet would have made of it by now.
// It is level-triggered: every call recomputes from the informer's pod and
// the simulator's runtime state, and it writes only what changed.
func (s *NodeSim) sync(key string) error {
	obj, exists, err := s.informer.GetIndexer().GetByKey(key)
	if err != nil {
		return err
	}
	if !exists {
		s.release(key, nil)
		return nil
	}
	pod := obj.(*corev1.Pod)
	node, ours := s.nodes[pod.Spec.NodeName]
	if !ours {
		return nil
	}
	now := time.Now()

	s.mu.Lock()
	p, dead := s.pods[key], node.dead
	s.mu.Unlock()
	if dead {
		return nil // no kubelet: the pod keeps its last status until it is deleted
	}
	if p != nil && p.uid != pod.UID {
		s.release(key, p) // same name, new pod (e.g. a StatefulSet replacement)
		p = nil
	}
	if p == nil {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			// Deleted before it ever ran here: nothing to drain.
			return s.deleteNow(pod)
		}
		if p, err = s.admit(key, pod, node, now); err != nil || p == nil {
			return err
		}
	}
	s.mu.Lock()
	deleted := p.deleted
	s.mu.Unlock()
	if deleted {
		return nil
	}

	if pod.DeletionTimestamp != nil {
		if done, err := s.terminate(key, pod, p, now); done || err != nil {
			return err
		}
	}

	s.mu.Lock()
	healthy := pod.Annotations[AnnotationUnready] != "true"
	if override, ok := s.health[key]; ok {
		healthy = override
	}
	p.ready = healthy && !now.Before(p.readyAt) && p.finished.IsZero()
	if p.backend != nil {
		// Requests still in flight while draining keep the answer they
		// would have had; only a failing readiness check turns it to 503.
		p.backend.ready.Store(p.ready)
	}
	readyAt := p.readyAt
	s.mu.Unlock()
	if now.Before(readyAt) {
		s.queue.AddAfter(key, readyAt.Sub(now))
	}
	return s.writeStatus(pod, p, now)
}

// admit starts a newly bound pod: address, backend, start time. It
// returns nil if the node died meanwhile.
func (s *NodeSim) admit(key string, pod *corev1.Pod, node *simNode, now time.Time) (*simPod, error) {
	p := &simPod{uid: pod.UID, name: pod.Name, node: node, started: now, readyAt: now.Add(s.readyAfterFor(pod))}
	ports := backendPortsOf(pod)
	if pod.Spec.HostNetwork {
		p.ip = netip.MustParseAddr(node.HostIP)
		if ports.any() {
			b, err := listenBackend(pod.Name, LoopbackAddr(node.HostIP), ports)
			if err != nil {
				return nil, fmt.Errorf("host-network backend: %w", err)
			}
			p.backend = b
		}
	} else if err := s.allocate(key, p, ports); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if node.dead {
		// killNode ran while the backend started: it must not outlive
		// its machine.
		if p.backend != nil {
			p.backend.close()
		}
		if s.inUse[p.ip] == key {
			delete(s.inUse, p.ip)
		}
		return nil, nil
	}
	s.pods[key] = p
	return p, nil
}

// allocate gives p the next free address of its node's block whose loopback
// mirror can bind all of the pod's ports.
func (s *NodeSim) allocate(key string, p *simPod, ports backendPorts) error {
	node := p.node
	size := 1 << (32 - node.block.Bits())
	s.mu.Lock()
	defer s.mu.Unlock()
	for range size {
		ip := node.cursor
		node.cursor = ip.Next()
		if !node.block.Contains(node.cursor) || isBroadcast(node.cursor, node.block) {
			node.cursor = node.block.Addr().Next()
		}
		if _, taken := s.inUse[ip]; taken {
			continue
		}
		if ports.any() {
			b, err := listenBackend(p.name, LoopbackAddr(ip.String()), ports)
			if err != nil {
				continue // held by something outside the simulator
			}
			p.backend = b
		}
		p.ip = ip
		s.inUse[ip] = key
		return nil
	}
	return fmt.Errorf("node %s: no free pod address in %s", node.Name, node.block)
}

func isBroadcast(ip netip.Addr, block netip.Prefix) bool {
	return !block.Contains(ip.Next())
}

// release forgets a pod incarnation: closes its backend, frees its address.
// p nil means whatever is tracked under key.
func (s *NodeSim) release(key string, p *simPod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == nil {
		p = s.pods[key]
	}
	if p == nil {
		return
	}
	if p.backend != nil {
		p.backend.close()
	}
	if owner, ok := s.inUse[p.ip]; ok && owner == key {
		delete(s.inUse, p.ip)
	}
	if s.pods[key] == p {
		delete(s.pods, key)
	}
	if len(s.past) >= maxPastPods {
		s.past = s.past[1:]
	}
	s.past = append(s.past, p.life(key))
}

// terminate runs graceful termination as the kubelet does: preStop hook
// (capped at the grace period) while still serving, then stop accepting,
// let requests in flight finish, report the containers exited and delete
// the pod with grace period 0. done reports that sync has nothing left to do.
func (s *NodeSim) terminate(key string, pod *corev1.Pod, p *simPod, now time.Time) (done bool, err error) {
	s.mu.Lock()
	if p.termAt.IsZero() {
		grace := defaultTerminationGP
		if pod.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		} else if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
		}
		p.termAt = now
		p.killAt = now.Add(grace)
		p.preStop = now.Add(min(preStopDuration(pod), grace))
	}
	switch {
	case now.Before(p.preStop):
		wait := p.preStop.Sub(now)
		s.mu.Unlock()
		s.queue.AddAfter(key, wait)
		return false, nil // keep serving and keep status current
	case !p.stopping:
		p.stopping = true
		if p.backend == nil {
			p.finished = now
			break
		}
		b, killAt := p.backend, p.killAt
		s.mu.Unlock()
		go func() {
			b.shutdown(killAt)
			s.mu.Lock()
			p.finished = time.Now()
			s.mu.Unlock()
			s.queue.Add(key)
		}()
		return false, nil
	}
	finished := !p.finished.IsZero()
	s.mu.Unlock()
	if !finished {
		return true, nil // draining; the drain goroutine requeues
	}
	if err := s.writeStatus(pod, p, now); err != nil && !apierrors.IsNotFound(err) {
		return true, err
	}
	if err := s.deleteNow(pod); err != nil {
		return true, err
	}
	s.mu.Lock()
	p.deleted = true
	s.mu.Unlock()
	return true, nil
}

func (s *NodeSim) deleteNow(pod *corev1.Pod) error {
	err := s.client.CoreV1().Pods(pod.Namespace).Delete(s.ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or a newer pod of the same name that sync will handle
	}
	return err
}

// writeStatus patches the kubelet-owned part of the status if it changed. The
// patch is a strategic merge patch computed from the informer's copy, so it
// carries only our fields: conditions merge by type, and a condition written
// by someone else meanwhile (a readiness gate) is neither dropped nor
// overwritten. The UID in the patch makes it fail against a newer pod of
// the same name.
func (s *NodeSim) writeStatus(pod *corev1.Pod, p *simPod, now time.Time) error {
	s.mu.Lock()
	rt := podRuntime{
		podIP:    p.ip.String(),
		hostIP:   p.node.HostIP,
		started:  p.started,
		ready:    p.ready,
		finished: p.finished,
	}
	s.mu.Unlock()
	want := kubeletStatus(pod, rt, now)
	oldJSON, err := json.Marshal(corev1.Pod{Status: pod.Status})
	if err != nil {
		return err
	}
	newJSON, err := json.Marshal(corev1.Pod{Status: want})
	if err != nil {
		return err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, corev1.Pod{})
	if err != nil {
		return err
	}
	if string(patch) == "{}" {
		return nil
	}
	var withUID map[string]any
	if err := json.Unmarshal(patch, &withUID); err != nil {
		return err
	}
	withUID["metadata"] = map[string]any{"uid": string(pod.UID)}
	if patch, err = json.Marshal(withUID); err != nil {
		return err
	}
	_, err = s.client.CoreV1().Pods(pod.Namespace).Patch(s.ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

func (s *NodeSim) readyAfterFor(pod *corev1.Pod) time.Duration {
	if v, ok := pod.Annotations[AnnotationReadyAfter]; ok {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d
		}
		s.logf("nodesim: %s/%s: bad %s %q", pod.Namespace, pod.Name, AnnotationReadyAfter, v)
	}
	return s.readyAfter
}

// backendPorts are the distinct ports of a pod's containers and sidecars
// its backend serves, by protocol.
type backendPorts struct {
	tcp, udp []int32
}

func (p backendPorts) any() bool { return len(p.tcp)+len(p.udp) > 0 }

// backendPortsOf lists the TCP and UDP ports of the pod's containers and
// sidecars.
func backendPortsOf(pod *corev1.Pod) backendPorts {
	var out backendPorts
	seen := map[corev1.Protocol]map[int32]bool{corev1.ProtocolTCP: {}, corev1.ProtocolUDP: {}}
	add := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, p := range c.Ports {
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				if ports, ok := seen[proto]; ok && !ports[p.ContainerPort] {
					ports[p.ContainerPort] = true
					if proto == corev1.ProtocolTCP {
						out.tcp = append(out.tcp, p.ContainerPort)
					} else {
						out.udp = append(out.udp, p.ContainerPort)
					}
				}
			}
		}
	}
	add(pod.Spec.Containers)
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add([]corev1.Container{c})
		}
	}
	return out
}

var sleepCommand = regexp.MustCompile(`^\s*(?:exec\s+)?(?:/bin/|/usr/bin/)?sleep\s+([0-9.]+)s?\s*$`)

// preStopDuration is the longest preStop hook of the pod's containers (they
// run in parallel): a sleep action, or an exec of `sleep N`, plain or via
// `sh -c`. Other hooks take no time here.
func preStopDuration(pod *corev1.Pod) time.Duration {
	var longest time.Duration
	for _, c := range pod.Spec.Containers {
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
			continue
		}
		h := c.Lifecycle.PreStop
		var d time.Duration
		switch {
		case h.Sleep != nil:
			d = time.Duration(h.Sleep.Seconds) * time.Second
		case h.Exec != nil:
			d = execSleep(h.Exec.Command)
		}
		longest = max(longest, d)
	}
	return longest
}

func execSleep(cmd []string) time.Duration {
	var line string
	switch {
	case len(cmd) == 2:
		line = cmd[0] + " " + cmd[1]
	case len(cmd) == 3 && (cmd[1] == "-c") && (cmd[0] == "sh" || cmd[0] == "/bin/sh" || cmd[0] == "bash" || cmd[0] == "/bin/bash"):
		line = cmd[2]
	default:
		return 0
	}
	m := sleepCommand.FindStringSubmatch(line)
	if m == nil {
		return 0
	}
	secs, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}

// Accessors for tests.

// PodIP returns the IP the pod reports (10.X.Y.Z), or "" if the simulator
// does not run it. Dial it through DialContext or LoopbackAddr.
func (s *NodeSim) PodIP(namespace, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pods[namespace+"/"+name]; ok {
		return p.ip.String()
	}
	return ""
}

// Backends counts the pods whose backend is accepting connections.
func (s *NodeSim) Backends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.pods {
		if p.backend != nil && !p.stopping && !p.node.dead {
			n++
		}
	}
	return n
}

// Pods counts the pods the simulator runs, terminating ones included.
func (s *NodeSim) Pods() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pods)
}

// PodLife is one pod incarnation's timeline in the simulator, for
// explaining a failed request after the fact.
type PodLife struct {
	Pod     string // namespace/name
	IP      string
	Zone    string // of its node
	Started time.Time
	ReadyAt time.Time // containers ready (unless the pod was made unready)
	// DeletionSeen is when the simulator saw the deletion and started the
	// preStop hook, which ends at PreStopEnd; then the backend stopped
	// listening at StoppedAccepting (a connection dialled before then may
	// have been reset by the stop, one dialled after is refused) and the
	// containers exited at Exited.
	DeletionSeen     time.Time
	PreStopEnd       time.Time
	StoppedAccepting time.Time
	Exited           time.Time
}

// maxPastPods bounds the timelines kept of pods that are gone.
const maxPastPods = 4096

func (p *simPod) life(key string) PodLife {
	l := PodLife{Pod: key, IP: p.ip.String(), Started: p.started, ReadyAt: p.readyAt, DeletionSeen: p.termAt,
		PreStopEnd: p.preStop, Exited: p.finished}
	if p.node != nil {
		l.Zone = p.node.Zone
	}
	if p.backend != nil {
		l.StoppedAccepting = p.backend.stoppedAt()
	}
	return l
}

// String is one line for a test log.
func (l PodLife) String() string {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format("15:04:05.000")
	}
	return fmt.Sprintf("pod %s ip %s started %s ready %s deletion seen %s preStop end %s stopped accepting %s exited %s",
		l.Pod, l.IP, at(l.Started), at(l.ReadyAt), at(l.DeletionSeen), at(l.PreStopEnd), at(l.StoppedAccepting), at(l.Exited))
}

// PodLives lists the timelines of the pods that have had the address ip
// (gone ones first), for explaining a failed request.
func (s *NodeSim) PodLives(ip string) []PodLife {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PodLife
	for _, l := range s.past {
		if l.IP == ip {
			out = append(out, l)
		}
	}
	for key, p := range s.pods {
		if p.ip.String() == ip {
			out = append(out, p.life(key))
		}
	}
	return out
}

// ReadyTimes lists, by the zone of their node, when the containers of
// the namespace's pods, running or gone, turned ready at or after from.
func (s *NodeSim) ReadyTimes(namespace string, from time.Time) map[string][]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := map[string][]time.Time{}
	add := func(l PodLife) {
		if strings.HasPrefix(l.Pod, namespace+"/") && !l.ReadyAt.Before(from) && !l.ReadyAt.After(now) {
			out[l.Zone] = append(out[l.Zone], l.ReadyAt)
		}
	}
	for _, l := range s.past {
		add(l)
	}
	for key, p := range s.pods {
		add(p.life(key))
	}
	return out
}

// Requests returns how many HTTP requests the pod's backend has received.
func (s *NodeSim) Requests(namespace, name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pods[namespace+"/"+name]; ok && p.backend != nil {
		return p.backend.requests.Load()
	}
	return 0
}

// SetReady overrides the pod's readiness check at run time, like flipping
// AnnotationUnready but without touching the object, and wins over the
// annotation. ClearReady removes the override.
func (s *NodeSim) SetReady(namespace, name string, ready bool) {
	key := namespace + "/" + name
	s.mu.Lock()
	s.health[key] = ready
	s.mu.Unlock()
	s.queue.Add(key)
}

// ClearReady removes a SetReady override.
func (s *NodeSim) ClearReady(namespace, name string) {
	key := namespace + "/" + name
	s.mu.Lock()
	delete(s.health, key)
	s.mu.Unlock()
	s.queue.Add(key)
}
