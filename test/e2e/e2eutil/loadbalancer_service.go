package e2eutil

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/targets"
)

// LoadBalancerService is a Service of type LoadBalancer of podlb's class
// selecting app=<app>.
func LoadBalancerService(ns, name, app string, annotations map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	class := loadbalancers.LoadBalancerClass
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
			Selector: map[string]string{"app": app}, Ports: ports},
	}
}

// ServicePort forwards port to the pods' 8080 (where the node simulator's
// backends answer TCP and, with WithUDP, UDP).
func ServicePort(name string, port int32, protocol corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: protocol, TargetPort: intstr.FromInt32(8080)}
}

// WithUDP makes the Deployment's pods also answer datagrams on 8080.
func WithUDP(d *appsv1.Deployment) *appsv1.Deployment {
	c := &d.Spec.Template.Spec.Containers[0]
	c.Ports = append(c.Ports, corev1.ContainerPort{Name: "udp", ContainerPort: 8080, Protocol: corev1.ProtocolUDP})
	return d
}

// GetService reads a Service; nil when it is gone.
func (k Kube) GetService(t testing.TB, ns, name string) *corev1.Service {
	t.Helper()
	svc, err := k.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// ServiceLoadBalancerStatus reads the podlb.io/status annotation a
// Service's load balancer writes; nil while there is none.
func (k Kube) ServiceLoadBalancerStatus(t testing.TB, ns, name string) *loadbalancers.ServiceStatus {
	t.Helper()
	svc := k.GetService(t, ns, name)
	if svc == nil {
		return nil
	}
	st, err := loadbalancers.ServiceStatusOf(svc)
	if err != nil {
		return nil
	}
	return st
}

// PatchService applies a JSON merge patch to a Service.
func (k Kube) PatchService(t testing.TB, ns, name string, patch any) {
	t.Helper()
	raw, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Client.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, raw, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// AskUDP sends one datagram to addr and returns the answer (the pod's
// name, from the node simulator's backends).
func AskUDP(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte("who")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// LoadBalancerServiceCloud is what the Service load balancer scenario
// needs to know of one cloud.
type LoadBalancerServiceCloud struct {
	// Name is the provider's ("aws", "gcp").
	Name string
	// Annotation is the cloud's load-balancer annotation value every
	// Service of the scenario carries, with extra fields (JSON members
	// such as `"group": "g"`, or "") added.
	Annotation func(extra string) string
	// Address is the load balancer's address as status.loadBalancer
	// should show it.
	Address func(cs *loadbalancers.ServiceCloudStatus) corev1.LoadBalancerIngress
	// DataPath is the emulator's address serving a port of the load
	// balancer, "" while nothing serves it.
	DataPath func(cs *loadbalancers.ServiceCloudStatus, port int32) string
	// UDP says whether the cloud serves UDP ports; when it does not, the
	// Warning must name the port.
	UDP bool
	// Leftovers lists what podlb created for the load balancer that still
	// exists in the emulator, given its last status.
	Leftovers func(t *testing.T, cs *loadbalancers.ServiceCloudStatus) []string
	// BadInput are Services (their annotation value and ports) that must
	// each get a Warning containing Want.
	BadInput []BadLoadBalancerService
}

// BadLoadBalancerService is one bad-input case of the scenario.
type BadLoadBalancerService struct {
	Name       string
	Annotation string
	Ports      []corev1.ServicePort
	Want       string
}

// LoadBalancerServiceScenario runs, in namespace ns, the six checks of
// Services of type LoadBalancer on one cloud over two Deployments of 4
// pods ("gated" with podlb's gate, "plain" without):
//
//   - serves: each Service's load balancer comes up, its address is in
//     status, TCP through it reaches its pods; a UDP port reaches the pods
//     through it, or (a cloud without pod-native UDP) a Warning names it;
//   - rollout: rolling both Deployments under steady TCP load fails no
//     request through the gated one's load balancer and some through the
//     ungated one's (the measurement can fail);
//   - shared: two Services share one load balancer; a third asking for a
//     taken port is refused with a Warning naming the holder; ports added
//     and removed, a Service switched back to ClusterIP and the others
//     deleted, while the holder's traffic never fails; nothing is left;
//   - bad input: each a Warning naming the field, once.
func LoadBalancerServiceScenario(t *testing.T, k Kube, ns string, cloud LoadBalancerServiceCloud) {
	t.Helper()
	own := map[string]string{annotationOf(cloud): cloud.Annotation("")}
	k.Create(t, WithUDP(RollingDeployment(ns, "gated", 4, true)), RollingDeployment(ns, "plain", 4, false))
	k.Create(t,
		LoadBalancerService(ns, "gated", "gated", own, ServicePort("tcp", 80, corev1.ProtocolTCP), ServicePort("udp", 53, corev1.ProtocolUDP)),
		LoadBalancerService(ns, "plain", "plain", own, ServicePort("tcp", 80, corev1.ProtocolTCP)))
	served := map[string]*loadbalancers.ServiceCloudStatus{}
	for _, app := range []string{"gated", "plain"} {
		Eventually(t, 2*time.Minute, app+": load balancer provisioned, port 80 healthy, gates True", func() error {
			cs, err := k.servedPorts(t, ns, app, cloud, 4, 80)
			if err != nil {
				return err
			}
			if app == "gated" {
				for _, p := range k.LivePods(t, ns, app) {
					if g := GateOf(&p); g == nil || g.Status != corev1.ConditionTrue || !IsReady(&p) {
						return fmt.Errorf("pod %s gate %+v", p.Name, g)
					}
				}
			}
			served[app] = cs
			return nil
		})
	}

	t.Run("serves", func(t *testing.T) {
		addr := cloud.DataPath(served["gated"], 80)
		for range 5 {
			if pod, code, err := GetThrough(addr, "", "/"); err != nil || code != http.StatusOK || !strings.HasPrefix(pod, "gated-") {
				t.Errorf("TCP through %s answered by %q (HTTP %d, %v), want a gated pod", addr, pod, code, err)
			}
		}
		if cloud.UDP {
			Eventually(t, time.Minute, "UDP port 53 served and its pods healthy", func() error {
				cs, err := k.servedPorts(t, ns, "gated", cloud, 4, 53)
				if err != nil {
					return err
				}
				udp := cloud.DataPath(cs, 53)
				if pod, err := AskUDP(udp); err != nil || !strings.HasPrefix(pod, "gated-") {
					return fmt.Errorf("a datagram to %s was answered by %q (%v), want a gated pod", udp, pod, err)
				}
				return nil
			})
		} else {
			Eventually(t, 30*time.Second, "a Warning naming the UDP port", func() error {
				if ws := k.Warnings(t, ns, "gated", "53/UDP"); len(ws) == 0 {
					return fmt.Errorf("no Warning naming 53/UDP: %v", k.AllWarnings(t, ns, "gated"))
				}
				if st := k.ServiceLoadBalancerStatus(t, ns, "gated"); st == nil || st.Clouds[cloud.Name].Refused["53/UDP"] == "" {
					return fmt.Errorf("status does not list 53/UDP as refused: %+v", st)
				}
				return nil
			})
		}
		evs, err := Events(ctx, k.Client, ns, "gated", "Service")
		if err != nil {
			t.Fatal(err)
		}
		if !hasEvent(evs, corev1.EventTypeNormal, "LoadBalancerProvisioned") {
			t.Errorf("no Normal LoadBalancerProvisioned Event: %v", evs)
		}
		// The ungated Deployment draws rollout-safety Warnings; its load
		// balancer draws none.
		for _, w := range k.AllWarnings(t, ns, "plain") {
			if w.Reason == "InvalidLoadBalancer" || w.Reason == "LoadBalancerFailed" {
				t.Errorf("a Warning on a valid Service: %s: %s", w.Reason, w.Message)
			}
		}
	})

	t.Run("rollout", func(t *testing.T) {
		gated := loadgen.Start(cloud.DataPath(served["gated"], 80), 4, 25*time.Millisecond)
		plain := loadgen.Start(cloud.DataPath(served["plain"], 80), 4, 25*time.Millisecond)
		time.Sleep(time.Second) // a baseline before the rollouts
		k.Restart(t, ns, "plain")
		k.Restart(t, ns, "gated")
		k.WaitRollout(t, ns, "plain", 2*time.Minute)
		k.WaitRollout(t, ns, "gated", 3*time.Minute)
		Eventually(t, time.Minute, "new gated pods healthy behind the load balancer", func() error {
			_, err := k.servedPorts(t, ns, "gated", cloud, 4, 80)
			return err
		})
		time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows
		g, p := gated.Stop(), plain.Stop()
		t.Logf("gated rollout: %d ok, %d failed; ungated: %d ok, %d failed", g.OK, g.Failed, p.OK, p.Failed)
		if g.OK < 200 {
			t.Errorf("only %d requests got through the gated load balancer", g.OK)
		}
		if g.Failed != 0 {
			t.Errorf("the gated rollout failed %d requests: %v", g.Failed, g.Errors)
		}
		if p.Failed == 0 {
			t.Errorf("the ungated rollout failed no request (%d ok): the test cannot tell the gate's effect", p.OK)
		}
	})

	t.Run("shared", func(t *testing.T) {
		sharedLoadBalancer(t, k, ns, cloud)
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range cloud.BadInput {
			k.Create(t, LoadBalancerService(ns, c.Name, "none", map[string]string{annotationOf(cloud): c.Annotation}, c.Ports...))
		}
		for _, c := range cloud.BadInput {
			Eventually(t, time.Minute, c.Name+": a Warning naming the problem", func() error {
				if ws := k.Warnings(t, ns, c.Name, c.Want); len(ws) == 0 {
					return fmt.Errorf("no Warning containing %q; have %v", c.Want, k.AllWarnings(t, ns, c.Name))
				}
				return nil
			})
		}
		time.Sleep(5 * time.Second) // time for a retry storm to show
		for _, c := range cloud.BadInput {
			for _, w := range k.AllWarnings(t, ns, c.Name) {
				if w.Count > 1 {
					t.Errorf("%s: Warning repeated %d times: %s", c.Name, w.Count, w.Message)
				}
			}
		}
		// Other Services' load balancers are undisturbed.
		if pod, code, err := GetThrough(cloud.DataPath(served["plain"], 80), "", "/"); err != nil || code != http.StatusOK || !strings.HasPrefix(pod, "plain-") {
			t.Errorf("plain's load balancer after the bad input: %q (HTTP %d, %v)", pod, code, err)
		}
	})
}

// sharedLoadBalancer is the scenario's "shared" part.
func sharedLoadBalancer(t *testing.T, k Kube, ns string, cloud LoadBalancerServiceCloud) {
	group := map[string]string{annotationOf(cloud): cloud.Annotation(`"group": "shared-` + ns + `"`)}
	k.Create(t, LoadBalancerService(ns, "one", "gated", group, ServicePort("tcp", 7001, corev1.ProtocolTCP)))
	k.Create(t, LoadBalancerService(ns, "two", "gated", group, ServicePort("tcp", 7002, corev1.ProtocolTCP)))
	var one, two *loadbalancers.ServiceCloudStatus
	Eventually(t, 2*time.Minute, "one and two served by one load balancer", func() error {
		var err error
		if one, err = k.servedPorts(t, ns, "one", cloud, 4, 7001); err != nil {
			return err
		}
		if two, err = k.servedPorts(t, ns, "two", cloud, 4, 7002); err != nil {
			return err
		}
		if a, b := cloud.Address(one), cloud.Address(two); a.Hostname != b.Hostname || a.IP != b.IP {
			return fmt.Errorf("two load balancers: %+v and %+v", a, b)
		}
		return nil
	})
	holder := loadgen.Start(cloud.DataPath(one, 7001), 2, 25*time.Millisecond)
	stopped := false
	defer func() {
		if !stopped {
			holder.Stop()
		}
	}()

	// A newcomer asking for the holder's port gets the rest.
	k.Create(t, LoadBalancerService(ns, "three", "gated", group, ServicePort("taken", 7001, corev1.ProtocolTCP), ServicePort("free", 7003, corev1.ProtocolTCP)))
	Eventually(t, time.Minute, "three refused port 7001 naming one, served on 7003", func() error {
		if ws := k.Warnings(t, ns, "three", ns+"/one"); len(ws) == 0 || !strings.Contains(ws[0], "7001") {
			return fmt.Errorf("no Warning naming port 7001 and its holder: %v", k.AllWarnings(t, ns, "three"))
		}
		cs, err := k.servedPorts(t, ns, "three", cloud, 4, 7003)
		if err != nil {
			return err
		}
		if cs.Ports["7001"] != nil {
			return fmt.Errorf("three binds the taken port: %+v", cs.Ports)
		}
		return nil
	})
	if pod, code, err := GetThrough(cloud.DataPath(one, 7001), "", "/"); err != nil || code != http.StatusOK || !strings.HasPrefix(pod, "gated-") {
		t.Errorf("the holder's port after the refusal: %q (HTTP %d, %v)", pod, code, err)
	}

	// A port added to two gets a listener; removed, only it goes.
	k.PatchService(t, ns, "two", map[string]any{"spec": map[string]any{"ports": []corev1.ServicePort{
		ServicePort("tcp", 7002, corev1.ProtocolTCP), ServicePort("more", 7004, corev1.ProtocolTCP)}}})
	Eventually(t, time.Minute, "two's new port 7004 served", func() error {
		cs, err := k.servedPorts(t, ns, "two", cloud, 4, 7002, 7004)
		if err != nil {
			return err
		}
		two = cs
		if pod, _, err := GetThrough(cloud.DataPath(cs, 7004), "", "/"); err != nil || !strings.HasPrefix(pod, "gated-") {
			return fmt.Errorf("7004 answered by %q: %v", pod, err)
		}
		return nil
	})
	k.PatchService(t, ns, "two", map[string]any{"spec": map[string]any{"ports": []corev1.ServicePort{ServicePort("tcp", 7002, corev1.ProtocolTCP)}}})
	Eventually(t, time.Minute, "two's port 7004 removed", func() error {
		if addr := cloud.DataPath(two, 7004); addr != "" {
			return fmt.Errorf("7004 still served at %s", addr)
		}
		_, err := k.servedPorts(t, ns, "two", cloud, 4, 7002)
		return err
	})

	// Back to ClusterIP: three is let go and its listener goes.
	k.PatchService(t, ns, "three", map[string]any{"spec": map[string]any{"type": "ClusterIP", "loadBalancerClass": nil}})
	Eventually(t, time.Minute, "three released", func() error {
		svc := k.GetService(t, ns, "three")
		if len(svc.Finalizers) != 0 || svc.Annotations[targets.AnnotationStatus] != "" || len(svc.Status.LoadBalancer.Ingress) != 0 {
			return fmt.Errorf("finalizers %v, status %q, address %+v", svc.Finalizers, svc.Annotations[targets.AnnotationStatus], svc.Status.LoadBalancer.Ingress)
		}
		if addr := cloud.DataPath(one, 7003); addr != "" {
			return fmt.Errorf("three's port 7003 still served at %s", addr)
		}
		return nil
	})

	// Deletion: two's listener goes, then with one the load balancer.
	k.deleteService(t, ns, "two")
	if addr := cloud.DataPath(one, 7002); addr != "" {
		t.Errorf("two's port 7002 still served at %s after its deletion", addr)
	}
	res, stopped := holder.Stop(), true
	t.Logf("the holder's port through the edits: %d ok, %d failed", res.OK, res.Failed)
	if res.Failed != 0 || res.OK < 50 {
		t.Errorf("the holder's traffic: %d ok, %d failed: %v", res.OK, res.Failed, res.Errors)
	}
	one = k.ServiceLoadBalancerStatus(t, ns, "one").Clouds[cloud.Name]
	k.deleteService(t, ns, "one")
	if left := cloud.Leftovers(t, one); len(left) != 0 {
		t.Errorf("left in the cloud: %v", left)
	}
	cms, err := k.Client.CoreV1().ConfigMaps(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		if strings.Contains(cm.Annotations["podlb.io/balancer"], "shared-"+ns) {
			t.Errorf("ledger entry %s of %s:%s left", cm.Name, cm.Annotations["podlb.io/service"], cm.Annotations["podlb.io/port"])
		}
	}
}

// deleteService deletes a Service and waits until podlb let it go.
func (k Kube) deleteService(t *testing.T, ns, name string) {
	t.Helper()
	if err := k.Client.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, time.Minute, name+" released by its finalizer", func() error {
		if svc := k.GetService(t, ns, name); svc != nil {
			return fmt.Errorf("still there, finalizers %v, status %s", svc.Finalizers, svc.Annotations[targets.AnnotationStatus])
		}
		return nil
	})
	evs, err := Events(ctx, k.Client, ns, name, "Service")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(evs, corev1.EventTypeNormal, "LoadBalancerDeleted") && !hasEvent(evs, corev1.EventTypeNormal, "LoadBalancerReleased") {
		t.Errorf("%s: no Normal Event on leaving its load balancer", name)
	}
}

// servedPorts checks that a Service's load balancer is up on the cloud,
// with the address in status.loadBalancer, each port bound with want
// healthy targets, and returns its status.
func (k Kube) servedPorts(t testing.TB, ns, name string, cloud LoadBalancerServiceCloud, want int, ports ...int32) (*loadbalancers.ServiceCloudStatus, error) {
	svc, st := k.GetService(t, ns, name), k.ServiceLoadBalancerStatus(t, ns, name)
	if svc == nil || st == nil || st.Clouds[cloud.Name] == nil {
		return nil, fmt.Errorf("%s: no status yet", name)
	}
	cs := st.Clouds[cloud.Name]
	if cs.Error != "" {
		return nil, fmt.Errorf("%s: %s", name, cs.Error)
	}
	addr := cloud.Address(cs)
	if got := svc.Status.LoadBalancer.Ingress; len(got) != 1 || (addr.Hostname == "" && addr.IP == "") || got[0].Hostname != addr.Hostname || got[0].IP != addr.IP {
		return nil, fmt.Errorf("%s: status.loadBalancer.ingress %+v, want %+v", name, got, addr)
	}
	for _, port := range ports {
		p := strconv.Itoa(int(port))
		if b := cs.Ports[p]; b == nil || b.Desired != want || b.Healthy != want || b.Error != "" {
			return nil, fmt.Errorf("%s: port %s: %+v", name, p, b)
		}
		if cloud.DataPath(cs, port) == "" {
			return nil, fmt.Errorf("%s: the load balancer serves nothing on %s yet: %+v", name, p, cs.Details)
		}
	}
	return cs, nil
}

func annotationOf(cloud LoadBalancerServiceCloud) string {
	return loadbalancers.CloudAnnotations[cloud.Name]
}

func hasEvent(evs []corev1.Event, typ, reason string) bool {
	for _, e := range evs {
		if e.Type == typ && e.Reason == reason {
			return true
		}
	}
	return false
}
