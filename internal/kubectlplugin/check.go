package kubectlplugin

import (
	"context"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/manifests"
	"github.com/podlb/podlb/targets"
)

type checkOptions struct {
	allNamespaces       bool
	controllerNamespace string
	leaseName           string
}

// Finding levels. Only problems make check fail.
const (
	levelOK        = "ok"
	levelProblem   = "PROBLEM"
	levelInfo      = "info"
	levelUnchecked = "unchecked"
)

type finding struct {
	level, subject, detail string
}

type findings []finding

func (fs *findings) add(level, subject, format string, args ...any) {
	*fs = append(*fs, finding{level: level, subject: subject, detail: fmt.Sprintf(format, args...)})
}

func (fs findings) problems() int {
	n := 0
	for _, f := range fs {
		if f.level == levelProblem {
			n++
		}
	}
	return n
}

// write renders the findings and a one-line verdict.
func (fs findings) write(w io.Writer) error {
	t := table{header: []string{"RESULT", "SUBJECT", "FINDING"}}
	for _, f := range fs {
		t.add(f.level, f.subject, f.detail)
	}
	if err := t.write(w); err != nil {
		return err
	}
	if n := fs.problems(); n > 0 {
		fmt.Fprintf(w, "\n%d problem%s found\n", n, plural(n))
	} else {
		fmt.Fprintln(w, "\nno problems found")
	}
	return nil
}

func (e *env) check(ctx context.Context, o checkOptions) error {
	var fs findings
	if err := e.checkLeader(ctx, o, &fs); err != nil {
		return err
	}
	if err := e.checkPermissions(ctx, o, &fs); err != nil {
		return err
	}
	if err := e.checkServices(ctx, o, &fs); err != nil {
		return err
	}
	if err := fs.write(e.out); err != nil {
		return err
	}
	if n := fs.problems(); n > 0 {
		return ChecksFailed{Problems: n}
	}
	return nil
}

// checkLeader looks for a controller holding the leader lease: holder
// set, renewed within the lease's duration.
func (e *env) checkLeader(ctx context.Context, o checkOptions, fs *findings) error {
	subject := "controller"
	lease, err := e.client.CoordinationV1().Leases(o.controllerNamespace).Get(ctx, o.leaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		fs.add(levelProblem, subject, "no lease %s/%s: no podlb controller leads (not installed, not running, or another --namespace / --leader-election-id)", o.controllerNamespace, o.leaseName)
		return nil
	}
	if apierrors.IsForbidden(err) {
		fs.add(levelUnchecked, subject, "you may not read lease %s/%s", o.controllerNamespace, o.leaseName)
		return nil
	}
	if err != nil {
		return err
	}
	holder := ""
	if lease.Spec.HolderIdentity != nil {
		holder = *lease.Spec.HolderIdentity
	}
	if holder == "" {
		fs.add(levelProblem, subject, "lease %s/%s has no holder: no podlb controller leads", o.controllerNamespace, o.leaseName)
		return nil
	}
	if lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil {
		fs.add(levelProblem, subject, "lease %s/%s held by %s was never renewed", o.controllerNamespace, o.leaseName, holder)
		return nil
	}
	since := e.now.Sub(lease.Spec.RenewTime.Time)
	duration := time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	if since > duration {
		fs.add(levelProblem, subject, "lease %s/%s held by %s expired: renewed %s ago, lasts %s; the leader is gone and no other replica took over",
			o.controllerNamespace, o.leaseName, holder, age(since), duration)
		return nil
	}
	fs.add(levelOK, subject, "%s leads (lease %s/%s renewed %s ago, lasts %s)", holder, o.controllerNamespace, o.leaseName, age(since), duration)
	return nil
}

// access is one permission the controller's RBAC grants.
type access struct {
	namespace string // "" for cluster-wide
	attrs     authorizationv1.ResourceAttributes
}

func (a access) String() string {
	r := a.attrs.Resource
	if a.attrs.Subresource != "" {
		r += "/" + a.attrs.Subresource
	}
	if a.attrs.Group != "" {
		r += "." + a.attrs.Group
	}
	if a.attrs.Name != "" {
		r += " " + a.attrs.Name
	}
	if a.namespace != "" {
		r += " in " + a.namespace
	}
	return a.attrs.Verb + " " + r
}

// grantedAccess expands RBAC rules into single permissions, in the
// rules' order.
func grantedAccess(rules []rbacv1.PolicyRule, namespace string) []access {
	var out []access
	for _, rule := range rules {
		names := rule.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, group := range rule.APIGroups {
			for _, res := range rule.Resources {
				resource, sub, _ := strings.Cut(res, "/")
				for _, verb := range rule.Verbs {
					for _, name := range names {
						out = append(out, access{namespace: namespace, attrs: authorizationv1.ResourceAttributes{
							Namespace: namespace, Group: group, Resource: resource, Subresource: sub, Verb: verb, Name: name,
						}})
					}
				}
			}
		}
	}
	return out
}

// checkPermissions asks the API server, as the controller's service
// account, whether it has every permission manifests/base grants it.
func (e *env) checkPermissions(ctx context.Context, o checkOptions, fs *findings) error {
	rbac, err := manifests.ControllerRBAC()
	if err != nil {
		return err
	}
	user := fmt.Sprintf("system:serviceaccount:%s:%s", o.controllerNamespace, rbac.ServiceAccount.Name)
	subject := "permissions"
	_, err = e.client.CoreV1().ServiceAccounts(o.controllerNamespace).Get(ctx, rbac.ServiceAccount.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// Run some other way (the sandbox, a developer's kubeconfig): the
		// manifests' permissions say nothing about it.
		fs.add(levelUnchecked, subject, "no service account %s/%s: the controller was not installed from manifests, so its permissions were not checked",
			o.controllerNamespace, rbac.ServiceAccount.Name)
		return nil
	case apierrors.IsForbidden(err):
		fs.add(levelUnchecked, subject, "you may not read service account %s/%s, so its permissions were not checked", o.controllerNamespace, rbac.ServiceAccount.Name)
		return nil
	case err != nil:
		return err
	}
	cfg := rest.CopyConfig(e.config)
	// The API server adds the service account's groups to an impersonated
	// service account user.
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	wanted := append(grantedAccess(rbac.ClusterRole.Rules, ""), grantedAccess(rbac.Role.Rules, o.controllerNamespace)...)
	var denied []string
	for _, a := range wanted {
		attrs := a.attrs
		review, err := as.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) {
			fs.add(levelUnchecked, subject, "you may not impersonate %s, so its permissions were not checked", user)
			return nil
		}
		if err != nil {
			return fmt.Errorf("access review of %s: %w", a, err)
		}
		if !review.Status.Allowed {
			denied = append(denied, a.String())
		}
	}
	for _, d := range denied {
		fs.add(levelProblem, subject, "%s may not %s (manifests/base grants it)", user, d)
	}
	if len(denied) == 0 {
		fs.add(levelOK, subject, "%s has all %d permissions manifests/base grants", user, len(wanted))
	}
	return nil
}

// stuckAfter is how long a Service may stay in deletion behind podlb's
// finalizer before check calls it stuck; releasing takes seconds.
const stuckAfter = time.Minute

// maxNamed bounds the pods a finding names.
const maxNamed = 5

func (e *env) checkServices(ctx context.Context, o checkOptions, fs *findings) error {
	ns := e.namespace
	if o.allNamespaces {
		ns = metav1.NamespaceAll
	}
	list, err := e.client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	annotated := 0
	for i := range list.Items {
		svc := &list.Items[i]
		if !podlbService(svc) && !slices.Contains(svc.Finalizers, targets.Finalizer) && !slices.Contains(svc.Finalizers, loadbalancers.ServiceFinalizer) {
			continue
		}
		annotated++
		if err := e.checkService(ctx, svc, fs); err != nil {
			return err
		}
	}
	where := "namespace " + e.namespace
	if o.allNamespaces {
		where = "any namespace"
	}
	if annotated == 0 {
		fs.add(levelInfo, "services", "no Service in %s has podlb annotations or is of type LoadBalancer with class %s", where, loadbalancers.LoadBalancerClass)
	}
	return nil
}

func (e *env) checkService(ctx context.Context, svc *corev1.Service, fs *findings) error {
	subject := "service " + svc.Namespace + "/" + svc.Name
	if svc.DeletionTimestamp != nil {
		for _, f := range []string{targets.Finalizer, loadbalancers.ServiceFinalizer} {
			if !slices.Contains(svc.Finalizers, f) {
				continue
			}
			deleting := e.now.Sub(svc.DeletionTimestamp.Time)
			level := levelInfo
			if deleting > stuckAfter {
				level = levelProblem
			}
			fs.add(level, subject, "deleted %s ago, held by finalizer %s until podlb releases its groups and load balancer (see its Warnings: kubectl podlb status svc/%s)",
				age(deleting), f, svc.Name)
		}
		return nil
	}
	checkLoadBalancer(svc, fs)
	if len(svc.Spec.Selector) == 0 {
		fs.add(levelInfo, subject, "no selector: podlb binds no pods")
		return nil
	}
	list, err := e.client.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return err
	}
	var pods []*corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })

	var ungated []string
	for _, p := range pods {
		if !targets.HasGate(p) {
			ungated = append(ungated, p.Name)
		}
	}
	if len(ungated) > 0 {
		fs.add(levelProblem, subject, "%d of %d pods lack readinessGates %s, so their rollouts do not wait for the load balancer: %s",
			len(ungated), len(pods), targets.GateConditionType, named(ungated))
	}

	warnings, err := warningEvents(ctx, e, svc.Namespace, "Service", svc.Name)
	if err != nil {
		return err
	}
	drain, known := drainSeconds(warnings)
	var short []string
	shortest := int64(-1)
	for _, p := range pods {
		s := targets.StopDelaySeconds(p)
		if shortest < 0 || s < shortest {
			shortest = s
		}
		if known && s < drain {
			short = append(short, fmt.Sprintf("%s (%ds)", p.Name, s))
		}
	}
	switch {
	case len(pods) == 0:
		fs.add(levelInfo, subject, "selects no pods")
		return nil
	case !known:
		fs.add(levelInfo, subject, "drain time unknown (podlb reports it only in TerminationShorterThanDrain Warnings, and there is none); pods keep serving at least %ds after termination starts", shortest)
	case len(short) > 0:
		fs.add(levelProblem, subject, "%d of %d pods stop serving before the group's %ds drain ends: %s; give them a preStop sleep and terminationGracePeriodSeconds of at least %ds",
			len(short), len(pods), drain, named(short), drain)
	default:
		fs.add(levelInfo, subject, "pods keep serving at least %ds after termination starts, covering the %ds drain podlb reported earlier", shortest, drain)
	}
	if len(ungated) == 0 {
		fs.add(levelOK, subject, "%d of %d pods list readinessGates %s", len(pods), len(pods), targets.GateConditionType)
	}
	return nil
}

// drainPattern finds the drain time in podlb's TerminationShorterThanDrain
// Warning ("... but GROUP drains for 300s: ...").
var drainPattern = regexp.MustCompile(`drains for (\d+)s`)

// drainSeconds is the longest drain time the Service's Warnings report.
func drainSeconds(warnings []corev1.Event) (int64, bool) {
	var drain int64
	known := false
	for _, ev := range warnings {
		if ev.Reason != "TerminationShorterThanDrain" {
			continue
		}
		m := drainPattern.FindStringSubmatch(ev.Message)
		if m == nil {
			continue
		}
		if s, err := strconv.ParseInt(m[1], 10, 64); err == nil && (!known || s > drain) {
			drain, known = s, true
		}
	}
	return drain, known
}

func named(items []string) string {
	if len(items) <= maxNamed {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:maxNamed], ", ") + fmt.Sprintf(" and %d more", len(items)-maxNamed)
}

// checkLoadBalancer reports on the load balancer podlb provisions for a
// Service of type LoadBalancer of its class: a refused port or a cloud's
// error is a problem; one still being provisioned is not yet.
func checkLoadBalancer(svc *corev1.Service, fs *findings) {
	if !loadbalancers.ServesService(svc) {
		return
	}
	subject := "service " + svc.Namespace + "/" + svc.Name
	st, err := loadbalancers.ServiceStatusOf(svc)
	if err != nil {
		fs.add(levelInfo, subject, "type LoadBalancer of class %s, no readable %s yet (%v)", loadbalancers.LoadBalancerClass, targets.AnnotationStatus, err)
		return
	}
	problems := 0
	for _, cloud := range slices.Sorted(maps.Keys(st.Clouds)) {
		cs := st.Clouds[cloud]
		if cs == nil {
			continue
		}
		if cs.Error != "" {
			fs.add(levelProblem, subject, "%s load balancer: %s", cloud, cs.Error)
			problems++
		}
		for _, port := range slices.Sorted(maps.Keys(cs.Refused)) {
			fs.add(levelProblem, subject, "%s refused port %s: %s", cloud, port, cs.Refused[port])
			problems++
		}
	}
	for _, p := range st.Problems {
		fs.add(levelProblem, subject, "%s", p)
		problems++
	}
	switch addr := serviceAddresses(svc); {
	case problems > 0:
	case addr == "":
		fs.add(levelInfo, subject, "podlb is provisioning its load balancer: no address in status.loadBalancer.ingress yet")
	default:
		fs.add(levelOK, subject, "load balancer %s at %s", st.Balancer, addr)
	}
}
