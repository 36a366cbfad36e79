package aws_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

func groupExists(t *testing.T, arn string) bool {
	t.Helper()
	_, err := emuclient.ELBv2Client(sim).DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}})
	var nf *elbtypes.TargetGroupNotFoundException
	if err != nil && !errors.As(err, &nf) {
		t.Fatalf("DescribeTargetGroups %s: %v", arn, err)
	}
	return err == nil
}

// ledgerEntries counts the ledger ConfigMaps that record a Service.
func ledgerEntries(t *testing.T, ns, name string) int {
	t.Helper()
	cms, err := kube.Client.CoreV1().ConfigMaps(e2eutil.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, cm := range cms.Items {
		if cm.Annotations["podlb.io/namespace"] == ns && cm.Annotations["podlb.io/service"] == name {
			n++
		}
	}
	return n
}

// taggedGroup creates a target group tagged as podlb tags the groups it
// creates, for the given cluster and Service port 80.
func taggedGroup(t *testing.T, cluster, ns, svc string) string {
	t.Helper()
	key := providers.BindingKey{Namespace: ns, Service: svc, Provider: "aws", Port: 80}
	return createGroup(t, awsprovider.OwnedName(cluster, key), func(in *elbv2.CreateTargetGroupInput) {
		for k, v := range map[string]string{awsprovider.TagCluster: cluster, awsprovider.TagNamespace: ns, awsprovider.TagService: svc, awsprovider.TagPort: "80"} {
			in.Tags = append(in.Tags, elbtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
	})
}

// A Service deleted while podlb was down, its finalizer removed by hand,
// leaks nothing: its owned group is deleted and its targets leave a shared
// group, while someone else's target there stays.
func TestSafetySweepReleasesWhatWasLostWhileDown(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	sharedArn := createGroup(t, uniqueName(ns, "lost"), nil)
	foreign := elbtypes.TargetDescription{Id: aws.String("10.7.7.9"), Port: aws.Int32(8080)}
	if _, err := emuclient.ELBv2Client(sim).RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(sharedArn), Targets: []elbtypes.TargetDescription{foreign}}); err != nil {
		t.Fatal(err)
	}
	k8s.Create(t, e2eutil.WebService(ns, "owned", byName(`{"create": {"protocol": "TCP"}}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "owned", 2, false))
	k8s.Create(t, e2eutil.WebService(ns, "shared", byName(`{"arn": "`+sharedArn+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "shared", 2, false))
	ownedArn := ownedGroupOf(t, ns, "owned")
	e2eutil.Eventually(t, 60*time.Second, "pods registered in both groups", func() error {
		if a := activeTargets(ownedArn); len(a) != 2 {
			return fmt.Errorf("owned group targets %v", a)
		}
		if a := activeTargets(sharedArn); len(a) != 3 {
			return fmt.Errorf("shared group targets %v", a)
		}
		return nil
	})

	if err := ctrl.Stop(); err != nil {
		t.Fatal(err)
	}
	k8s.DeleteWithoutFinalizer(t, ns, "owned")
	k8s.DeleteWithoutFinalizer(t, ns, "shared")
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 60*time.Second, "owned group deleted, shared group back to its foreign target", func() error {
		if groupExists(t, ownedArn) {
			return fmt.Errorf("owned group %s still exists", ownedArn)
		}
		a := activeTargets(sharedArn)
		if _, ok := a["10.7.7.9:8080"]; !ok || len(a) != 1 {
			return fmt.Errorf("shared group targets %v, want only 10.7.7.9:8080", a)
		}
		if n := ledgerEntries(t, ns, "owned") + ledgerEntries(t, ns, "shared"); n != 0 {
			return fmt.Errorf("%d ledger entries left", n)
		}
		return nil
	})
	if !groupExists(t, sharedArn) {
		t.Error("the shared group, not podlb's, was deleted")
	}
}

// A group podlb created but never recorded (a crash in between) is found
// by its tags and deleted once its Service is gone, while groups of other
// clusters and of live Services stay.
func TestSafetySweepFindsUnrecordedOwnedGroup(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	k8s.Create(t, e2eutil.WebService(ns, "alive", byName(`{"create": {"protocol": "TCP"}}`)))
	aliveArn := ownedGroupOf(t, ns, "alive")
	ghostArn := taggedGroup(t, clusterName, ns, "ghost")
	otherClusterArn := taggedGroup(t, "another-cluster", ns, "ghost")
	t.Cleanup(func() {
		_, _ = emuclient.ELBv2Client(sim).DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: aws.String(otherClusterArn)})
	})

	restartController(t)
	e2eutil.Eventually(t, 60*time.Second, "unrecorded group of a missing Service deleted", func() error {
		if groupExists(t, ghostArn) {
			return fmt.Errorf("%s still exists", ghostArn)
		}
		return nil
	})
	if !groupExists(t, otherClusterArn) {
		t.Error("another cluster's group was deleted")
	}
	if !groupExists(t, aliveArn) {
		t.Error("the group of a live Service was deleted")
	}
}

// A Service naming a group podlb created for another Service is refused
// with a Warning that names the owner, and registers nothing there.
func TestSafetyGroupOwnedByAnotherServiceIsRefused(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	k8s.Create(t, e2eutil.WebService(ns, "owner", byName(`{"create": {"protocol": "TCP"}}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "owner", 2, false))
	arn := ownedGroupOf(t, ns, "owner")
	name := arn[strings.Index(arn, "targetgroup/")+len("targetgroup/") : strings.LastIndex(arn, "/")]
	k8s.Create(t, e2eutil.WebService(ns, "by-arn", byName(`{"arn": "`+arn+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "by-arn", 2, true))
	k8s.Create(t, e2eutil.WebService(ns, "by-name", byName(`{"name": "`+name+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "by-name", 2, true))

	owner := fmt.Sprintf("cluster %s, Service %s/owner port 80", clusterName, ns)
	k8s.ExpectProblemsNamed(t, ns, []e2eutil.BadInput{{Service: "by-arn", Want: owner}, {Service: "by-name", Want: owner}})
	for svc, field := range map[string]string{"by-arn": "port 80: arn: ", "by-name": "port 80: name: "} {
		if ws := k8s.Warnings(t, ns, svc, field); len(ws) == 0 {
			t.Errorf("%s: no Warning naming the field %s: %v", svc, field, k8s.AllWarnings(t, ns, svc))
		}
	}
	e2eutil.Eventually(t, 30*time.Second, "only the owner's pods in its group", func() error {
		return converged(t, ns, "owner", arn, 2, "", false)
	})
}

// When two Services share one group and want the same targets, the one
// that goes leaves the targets the other still wants.
func TestSafetySharedGroupTwoServicesSameTarget(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn := createGroup(t, uniqueName(ns, "twin"), nil)
	for _, name := range []string{"twin-a", "twin-b"} {
		svc := e2eutil.WebService(ns, name, byName(`{"arn": "`+arn+`"}`))
		svc.Spec.Selector = map[string]string{"app": "twin"}
		k8s.Create(t, svc)
	}
	k8s.Create(t, e2eutil.RollingDeployment(ns, "twin", 2, false))
	e2eutil.Eventually(t, 60*time.Second, "both Services' pods registered", func() error {
		if err := converged(t, ns, "twin", arn, 2, "", false); err != nil {
			return err
		}
		for _, name := range []string{"twin-a", "twin-b"} {
			if st := k8s.Status(t, ns, name); st == nil || st.Bindings["aws"]["80"] == nil || st.Bindings["aws"]["80"].Registered != 2 {
				return fmt.Errorf("%s status %s", name, k8s.StatusJSON(t, ns, name))
			}
		}
		return nil
	})

	if err := kube.Client.CoreV1().Services(ns).Delete(ctx, "twin-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 30*time.Second, "twin-a released", func() error {
		if _, err := kube.Client.CoreV1().Services(ns).Get(ctx, "twin-a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	// twin-b still wants both targets: they stay registered, not draining.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if err := converged(t, ns, "twin", arn, 2, "", false); err != nil {
			t.Fatalf("after twin-a went: %v", err)
		}
	}

	if err := kube.Client.CoreV1().Services(ns).Delete(ctx, "twin-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 30*time.Second, "the last Service takes its targets out", func() error {
		if a := activeTargets(arn); len(a) != 0 {
			return fmt.Errorf("targets %v", a)
		}
		return nil
	})
}

// A Service whose owned group a listener still forwards to says which
// listener and the way out, once per message, and lets go once the
// listener is gone.
func TestSafetyDeletionBlockedByListenerNamesIt(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	k8s.Create(t, e2eutil.WebService(ns, "held", byName(`{"create": {"protocol": "TCP"}}`)))
	arn := ownedGroupOf(t, ns, "held")
	lbName := uniqueName(ns, "held")
	lbArn, _, err := emuclient.NLB(ctx, sim, lbName, arn)
	if err != nil {
		t.Fatal(err)
	}
	lbID := lbArn[strings.Index(lbArn, ":loadbalancer/")+len(":loadbalancer/"):]

	if err := kube.Client.CoreV1().Services(ns).Delete(ctx, "held", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	group := arn[strings.Index(arn, "targetgroup/"):]
	wants := []string{"still used by a load balancer (" + lbID + " listener TCP:80 default action)", "remove the listener's forward to " + group, "podlb.io/cleanup"}
	e2eutil.Eventually(t, 30*time.Second, "Warning naming the listener", func() error {
		ws := k8s.Warnings(t, ns, "held", "still used by")
		if len(ws) == 0 {
			return fmt.Errorf("no Warning yet: %v", k8s.AllWarnings(t, ns, "held"))
		}
		for _, want := range wants {
			if !strings.Contains(ws[0], want) {
				return fmt.Errorf("Warning %q does not say %q", ws[0], want)
			}
		}
		return nil
	})
	// Retries every few seconds (MaxBackoff 5 s) repeat the same message:
	// still one Warning, emitted once.
	time.Sleep(12 * time.Second)
	var failed int32
	for _, e := range k8s.AllWarnings(t, ns, "held") {
		if e.Reason == "ReleaseFailed" {
			failed += e.Count
		}
	}
	if failed != 1 {
		t.Errorf("ReleaseFailed emitted %d times while the listener stayed, want once", failed)
	}
	if !groupExists(t, arn) {
		t.Fatal("group deleted while a listener forwards to it")
	}

	if _, err := emuclient.ELBv2Client(sim).DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(lbArn)}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 60*time.Second, "group deleted and Service gone", func() error {
		if groupExists(t, arn) {
			return fmt.Errorf("group still exists")
		}
		if _, err := kube.Client.CoreV1().Services(ns).Get(ctx, "held", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service still there: %v", err)
		}
		return nil
	})
}
