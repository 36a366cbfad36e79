package kubectlplugin

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/targets"
)

// statusKind is a kind of object podlb writes status on. A new kind (an
// Ingress, say) is one more entry in statusKinds with its own load.
type statusKind struct {
	names []string // as typed before the slash, lower case
	load  func(ctx context.Context, e *env, name string) (*statusReport, error)
}

var statusKinds = []statusKind{
	{names: []string{"service", "services", "svc"}, load: serviceStatus},
}

// statusReport is what status shows of one object, whatever its kind.
type statusReport struct {
	object string // e.g. "service shop/web"
	// status is podlb's status of the object, nil when there is none;
	// note then says why.
	status *targets.Status
	// loadBalancer is the status of a Service of type LoadBalancer whose
	// load balancer podlb provisions (service is then set too), instead
	// of status.
	loadBalancer *loadbalancers.ServiceStatus
	service      *corev1.Service
	note         string
	warnings     []corev1.Event // newest first
}

func (e *env) status(ctx context.Context, arg string) error {
	kind, name, err := splitObject(arg, "service")
	if err != nil {
		return err
	}
	for _, k := range statusKinds {
		if slices.Contains(k.names, kind) {
			rep, err := k.load(ctx, e, name)
			if err != nil {
				return err
			}
			return rep.write(e.out, e.now)
		}
	}
	var known []string
	for _, k := range statusKinds {
		known = append(known, k.names[0])
	}
	return fmt.Errorf("status: podlb keeps no status on %q (known: %s)", kind, strings.Join(known, ", "))
}

// maxWarnings bounds the Events shown: the newest tell what is wrong now.
const maxWarnings = 10

func serviceStatus(ctx context.Context, e *env, name string) (*statusReport, error) {
	svc, err := e.client.CoreV1().Services(e.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	rep := &statusReport{object: fmt.Sprintf("service %s/%s", svc.Namespace, svc.Name)}
	switch {
	case loadbalancers.ServesService(svc) && svc.Annotations[targets.AnnotationStatus] == "":
		rep.note = fmt.Sprintf("type LoadBalancer, class %s, but no %s yet: podlb has not reconciled this Service (is the controller running and leading? try kubectl podlb check)",
			loadbalancers.LoadBalancerClass, targets.AnnotationStatus)
	case loadbalancers.ServesService(svc):
		rep.service = svc
		if rep.loadBalancer, err = loadbalancers.ServiceStatusOf(svc); err != nil {
			return nil, fmt.Errorf("%s on service %s: %w", targets.AnnotationStatus, name, err)
		}
	case len(cloudAnnotations(svc)) == 0:
		rep.note = fmt.Sprintf("not annotated for podlb (%s) nor of type LoadBalancer with class %s: podlb leaves it alone",
			strings.Join(slices.Sorted(maps.Keys(targets.KnownCloudAnnotations)), ", "), loadbalancers.LoadBalancerClass)
	case svc.Annotations[targets.AnnotationStatus] == "":
		rep.note = fmt.Sprintf("no %s yet: podlb has not reconciled this Service (is the controller running and leading? try kubectl podlb check)", targets.AnnotationStatus)
	default:
		if rep.status, err = targets.StatusOf(svc); err != nil {
			return nil, fmt.Errorf("%s on service %s: %w", targets.AnnotationStatus, name, err)
		}
	}
	if rep.warnings, err = warningEvents(ctx, e, svc.Namespace, "Service", svc.Name); err != nil {
		return nil, err
	}
	if len(rep.warnings) > maxWarnings {
		rep.warnings = rep.warnings[:maxWarnings]
	}
	return rep, nil
}

// cloudAnnotations lists the podlb cloud annotation keys the Service has.
func cloudAnnotations(svc *corev1.Service) []string {
	var out []string
	for key := range targets.KnownCloudAnnotations {
		if _, ok := svc.Annotations[key]; ok {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	return out
}

// warningEvents lists an object's Warning Events, newest first.
func warningEvents(ctx context.Context, e *env, namespace, kind, name string) ([]corev1.Event, error) {
	list, err := e.client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"involvedObject.kind": kind, "involvedObject.name": name, "type": corev1.EventTypeWarning,
	}.String()})
	if err != nil {
		return nil, err
	}
	out := list.Items
	sort.SliceStable(out, func(i, j int) bool { return lastSeen(&out[i]).After(lastSeen(&out[j])) })
	return out, nil
}

func lastSeen(ev *corev1.Event) time.Time {
	for _, t := range []time.Time{ev.LastTimestamp.Time, ev.EventTime.Time, ev.FirstTimestamp.Time} {
		if !t.IsZero() {
			return t
		}
	}
	return ev.CreationTimestamp.Time
}

// bindingRef names one binding in a status: cloud and Service port.
type bindingRef struct {
	cloud, port string
	status      *targets.BindingStatus
}

// bindings lists a status's bindings by cloud, then port number.
func bindings(st *targets.Status) []bindingRef {
	var out []bindingRef
	for _, cloud := range slices.Sorted(maps.Keys(st.Bindings)) {
		ports := slices.Collect(maps.Keys(st.Bindings[cloud]))
		sortPorts(ports)
		for _, port := range ports {
			out = append(out, bindingRef{cloud: cloud, port: port, status: st.Bindings[cloud][port]})
		}
	}
	return out
}

func (r *statusReport) write(w io.Writer, now time.Time) error {
	fmt.Fprintln(w, r.object)
	switch {
	case r.loadBalancer != nil:
		if err := writeLoadBalancer(w, r.service, r.loadBalancer); err != nil {
			return err
		}
	case r.status != nil:
		if err := writeStatus(w, r.status); err != nil {
			return err
		}
	default:
		fmt.Fprintf(w, "  %s\n", r.note)
	}
	if len(r.warnings) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nRecent Warning Events:\n")
	t := table{header: []string{"LAST SEEN", "REASON", "COUNT", "MESSAGE"}}
	for _, ev := range r.warnings {
		t.add(age(now.Sub(lastSeen(&ev))), ev.Reason, strconv.Itoa(int(max(ev.Count, 1))), ev.Message)
	}
	return t.write(w)
}

// writeStatus renders a podlb status: one row per cloud and port, then
// what does not fit a row.
func writeStatus(w io.Writer, st *targets.Status) error {
	bs := bindings(st)
	if len(bs) > 0 {
		fmt.Fprintln(w)
		t := table{header: []string{"CLOUD", "PORT", "GROUP", "OWNED", "DESIRED", "REGISTERED", "HEALTHY", "REJECTED", "ERROR"}}
		for _, b := range bs {
			s := b.status
			if s == nil {
				s = &targets.BindingStatus{}
			}
			t.add(b.cloud, b.port, s.Group, yesNo(s.Owned), strconv.Itoa(s.Desired), strconv.Itoa(s.Registered),
				strconv.Itoa(s.Healthy), strconv.Itoa(len(s.Rejected)), s.Error)
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	var rejected, details []string
	for _, b := range bs {
		if b.status == nil {
			continue
		}
		for _, target := range slices.Sorted(maps.Keys(b.status.Rejected)) {
			rejected = append(rejected, fmt.Sprintf("%s %s %s: %s", b.cloud, b.port, target, b.status.Rejected[target]))
		}
		if len(b.status.Details) > 0 {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(b.status.Details)) {
				kv = append(kv, k+"="+b.status.Details[k])
			}
			details = append(details, fmt.Sprintf("%s %s: %s", b.cloud, b.port, strings.Join(kv, " ")))
		}
	}
	if len(bs) == 0 && len(st.Problems) == 0 && len(st.Ignored) == 0 {
		fmt.Fprintln(w, "  no bindings")
	}
	section(w, "Refused targets (rejected by the cloud; the others are served)", rejected)
	section(w, "Annotation problems", st.Problems)
	section(w, "Ignored annotations", st.Ignored)
	section(w, "Details", details)
	return nil
}
