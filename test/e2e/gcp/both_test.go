package gcp_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const awsAnnotation = "podlb.io/aws-target-groups"

// awsHealthy maps "ip:port" of a target group's targets that are not
// draining to the time each turned healthy (zero while not healthy).
func awsHealthy(arn string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, tg := range awsSim.Targets(arn) {
		if tg.State == "draining" {
			continue
		}
		var at time.Time
		if tg.State == "healthy" {
			at = tg.HealthyAt
		}
		out[fmt.Sprintf("%s:%d", tg.ID, tg.Port)] = at
	}
	return out
}

// Scenario 9: one Service on both clouds. A controller serving only GCP
// says it ignores the AWS annotation; once it serves both, the pods are
// targets of an NLB's target group and endpoints of the backend service's
// NEGs, their gates open only when both report them healthy, and a
// rollout under load through both load balancers fails no request.
func TestBothCloudsAtOnce(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	bs, gcpAddr := loadBalancer(t, resourceName(ns, "both"), 2)
	neg := negName(ns, "both")
	arn, awsAddr := e2eutil.TargetGroupBehindNLB(t, awsSim, resourceName(ns, "both"))
	if withAWS {
		restartController(t, false)
	}
	svc := e2eutil.WebService(ns, "both", inBackendService(bs))
	svc.Annotations[awsAnnotation] = `{"http": {"arn": "` + arn + `"}}`
	k8s.Create(t, svc)

	// This controller serves GCP only: it binds the NEGs and lists the AWS
	// annotation as ignored.
	e2eutil.Eventually(t, 30*time.Second, "AWS annotation listed as ignored", func() error {
		st := k8s.Status(t, ns, "both")
		if st == nil || st.Bindings["gcp"]["80"] == nil || len(st.Bindings["aws"]) != 0 ||
			len(st.Ignored) != 1 || !strings.HasPrefix(st.Ignored[0], awsAnnotation+":") {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "both"))
		}
		return nil
	})

	// The operator enables AWS too; the controller restarts with both.
	restartController(t, true)
	t.Cleanup(func() {
		// Hand the next tests the GCP-only controller, once this Service's
		// AWS targets are released by a controller that can.
		_ = kube.Client.CoreV1().Services(ns).Delete(ctx, "both", metav1.DeleteOptions{})
		e2eutil.Eventually(t, 60*time.Second, "Service released on both clouds", func() error {
			if _, err := kube.Client.CoreV1().Services(ns).Get(ctx, "both", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Service still there: %v", err)
			}
			return nil
		})
		restartController(t, false)
	})
	k8s.Create(t, e2eutil.RollingDeployment(ns, "both", 6, true))

	bothConverged := func() error {
		if err := converged(t, ns, "both", neg, bs, 6, computesim.StateHealthy, true); err != nil {
			return fmt.Errorf("gcp: %w", err)
		}
		healthy := awsHealthy(arn)
		for _, p := range k8s.LivePods(t, ns, "both") {
			if healthy[p.Status.PodIP+":8080"].IsZero() {
				return fmt.Errorf("aws: pod %s not healthy in %s: %v", p.Name, arn, healthy)
			}
		}
		if len(healthy) != 6 {
			return fmt.Errorf("aws: %d targets", len(healthy))
		}
		return nil
	}
	// The gate opened only when both clouds reported the pod healthy
	// (condition times have second precision).
	gatesAfterBothHealthy := func() {
		t.Helper()
		gcpAt, awsAt := health(bs), awsHealthy(arn)
		for _, p := range k8s.LivePods(t, ns, "both") {
			g := e2eutil.GateOf(&p)
			key := p.Status.PodIP + ":8080"
			for cloud, at := range map[string]time.Time{"gcp": gcpAt[key].FirstHealthyAt, "aws": awsAt[key]} {
				if at.IsZero() || g.LastTransitionTime.Add(time.Second).Before(at) {
					t.Errorf("pod %s gate True at %v (%s: %s) but healthy on %s at %v", p.Name, g.LastTransitionTime, g.Reason, g.Message, cloud, at)
				}
			}
		}
	}
	e2eutil.Eventually(t, 90*time.Second, "6 pods healthy on both clouds", bothConverged)
	gatesAfterBothHealthy()
	e2eutil.Eventually(t, 10*time.Second, "status shows both clouds", func() error {
		st := k8s.Status(t, ns, "both")
		if st == nil || len(st.Ignored) != 0 {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "both"))
		}
		for _, cloud := range []string{"aws", "gcp"} {
			b := st.Bindings[cloud]["80"]
			if b == nil || b.Desired != 6 || b.Registered != 6 || b.Healthy != 6 || b.Error != "" {
				return fmt.Errorf("%s: status %s", cloud, k8s.StatusJSON(t, ns, "both"))
			}
		}
		if st.Bindings["aws"]["80"].Details["arn"] != arn || st.Bindings["gcp"]["80"].Details["negs"] != neg {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "both"))
		}
		return nil
	})

	gcpLoad := loadgen.Start(gcpAddr, 4, 25*time.Millisecond)
	awsLoad := loadgen.Start(awsAddr, 4, 25*time.Millisecond)
	time.Sleep(time.Second)
	k8s.Restart(t, ns, "both")
	k8s.WaitRollout(t, ns, "both", 3*time.Minute)
	e2eutil.Eventually(t, 60*time.Second, "new pods healthy on both clouds", bothConverged)
	time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows
	g, a := gcpLoad.Stop(), awsLoad.Stop()
	t.Logf("rollout on both clouds: GCP %d ok, %d failed; AWS %d ok, %d failed", g.OK, g.Failed, a.OK, a.Failed)
	for cloud, r := range map[string]loadgen.Result{"GCP": g, "AWS": a} {
		if r.Failed != 0 {
			t.Errorf("%s: %d requests failed: %v", cloud, r.Failed, r.Errors)
		}
		if r.OK < 200 {
			t.Errorf("%s: only %d requests got through", cloud, r.OK)
		}
	}
	gatesAfterBothHealthy()
}
