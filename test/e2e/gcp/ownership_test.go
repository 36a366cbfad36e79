package gcp_test

import (
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// podlbNEG creates a NEG whose description says podlb created it for
// cluster and Service svc's port 80, as podlb would before recording it.
func podlbNEG(t *testing.T, zone, name, cluster, ns, svc string) {
	t.Helper()
	key := providers.BindingKey{Namespace: ns, Service: svc, Provider: "gcp", Port: 80}
	op, err := gce.NEGs.Insert(ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zone,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{
			Name: proto.String(name), NetworkEndpointType: proto.String("GCE_VM_IP_PORT"),
			Description: proto.String(gcpprovider.Description(cluster, key)),
		}})
	if err := emuclient.WaitOp(ctx, op, err); err != nil {
		t.Fatal(err)
	}
}

// A Service naming the NEGs podlb created for another Service is refused
// with a Warning that names the owner, and attaches nothing to them.
func TestSafetyNEGOwnedByAnotherServiceIsRefused(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	name := resourceName(ns, "taken")
	byName := map[string]string{gcpprovider.AnnotationKey: `{"http": {"name": "` + name + `"}}`}
	k8s.Create(t, e2eutil.WebService(ns, "owner", byName))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "owner", 2, false))
	e2eutil.Eventually(t, 60*time.Second, "owner's NEGs hold its pods", func() error {
		return converged(t, ns, "owner", name, "", 2, "", false)
	})
	k8s.Create(t, e2eutil.WebService(ns, "intruder", byName))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "intruder", 2, true))

	owner := fmt.Sprintf("cluster %s, Service %s/owner port 80", clusterName, ns)
	k8s.ExpectProblemsNamed(t, ns, []e2eutil.BadInput{{Service: "intruder", Want: owner}})
	if err := converged(t, ns, "owner", name, "", 2, "", false); err != nil {
		t.Errorf("owner's NEGs: %v", err)
	}
}

// NEGs podlb created but never recorded (a crash in between) are found by
// their description and deleted once their Service is gone, while another
// cluster's stay.
func TestSafetySweepDeletesUnrecordedNEG(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	ghost := negName(ns, "ghost")
	podlbNEG(t, zones[0], ghost, clusterName, ns, "ghost")
	podlbNEG(t, zones[1], ghost, clusterName, ns, "ghost")
	other := resourceName(ns, "other-cluster")
	podlbNEG(t, zones[0], other, "another-cluster", ns, "ghost")
	t.Cleanup(func() {
		op, err := gce.NEGs.Delete(ctx, &computepb.DeleteNetworkEndpointGroupRequest{Project: project, Zone: zones[0], NetworkEndpointGroup: other})
		_ = emuclient.WaitOp(ctx, op, err)
	})

	restartController(t, false)
	e2eutil.Eventually(t, 60*time.Second, "unrecorded NEGs of a missing Service deleted", func() error {
		if negs := negsNamed(t, ghost); len(negs) != 0 {
			return fmt.Errorf("NEGs left in %v", negs)
		}
		return nil
	})
	if negs := negsNamed(t, other); len(negs) != 1 {
		t.Errorf("another cluster's NEG: %v", negs)
	}
}

// A Service deleted while podlb was down, its finalizer removed by hand,
// leaks nothing: its NEGs leave the backend service and are deleted.
func TestSafetySweepReleasesNEGsLostWhileDown(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	bs := backendService(t, resourceName(ns, "lost"), 2)
	k8s.Create(t, e2eutil.WebService(ns, "lost", inBackendService(bs)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "lost", 2, false))
	neg := negName(ns, "lost")
	e2eutil.Eventually(t, 60*time.Second, "NEGs attached and in the backend service", func() error {
		if err := converged(t, ns, "lost", neg, "", 2, "", false); err != nil {
			return err
		}
		if got := backendNEGs(t, bs); len(got) != len(zonesWithNodes(t)) {
			return fmt.Errorf("backends %v", got)
		}
		return nil
	})

	if err := ctrl.Stop(); err != nil {
		t.Fatal(err)
	}
	k8s.DeleteWithoutFinalizer(t, ns, "lost")
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 60*time.Second, "NEGs out of the backend service and deleted", func() error {
		if got := backendNEGs(t, bs); len(got) != 0 {
			return fmt.Errorf("backends %v", got)
		}
		if negs := negsNamed(t, neg); len(negs) != 0 {
			return fmt.Errorf("NEGs left in %v", negs)
		}
		return nil
	})
}
