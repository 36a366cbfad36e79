package rbac_test

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/test/cluster"
)

// TestPodSecurityRestricted creates the controller's pod, as each variant's
// Deployment would, in the podlb-system namespace labelled
// pod-security.kubernetes.io/enforce=restricted by the base. Pod Security
// admission enforces on pods (Deployments only get warnings), so a
// dry-run pod create is the real check. Each weakened copy of the spec
// must be rejected, which shows the check has teeth.
func TestPodSecurityRestricted(t *testing.T) {
	cluster.Require(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := v.render(t)
			applyNamespace(t, objs)
			d := typed[appsv1.Deployment](t, objs, "Deployment", "podlb-controller")
			if err := dryRunPod(d, nil); err != nil {
				t.Fatalf("the controller's pod is rejected: %v", err)
			}
		})
	}

	d := typed[appsv1.Deployment](t, variants[0].render(t), "Deployment", "podlb-controller")
	weakened := []struct {
		name string
		// want is the field the rejection must name.
		want   string
		mutate func(*corev1.PodSpec)
	}{
		{"runAsNonRoot removed", "runAsNonRoot", func(s *corev1.PodSpec) {
			s.SecurityContext.RunAsNonRoot = nil
			s.Containers[0].SecurityContext.RunAsNonRoot = nil
		}},
		{"root user", "runAsUser=0", func(s *corev1.PodSpec) {
			s.SecurityContext.RunAsUser = ptrTo[int64](0)
		}},
		{"privilege escalation allowed", "allowPrivilegeEscalation", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptrTo(true)
		}},
		{"capabilities kept", "capabilities", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities = nil
		}},
		{"no seccomp profile", "seccompProfile", func(s *corev1.PodSpec) {
			s.SecurityContext.SeccompProfile = nil
			s.Containers[0].SecurityContext.SeccompProfile = nil
		}},
	}
	for _, w := range weakened {
		t.Run(w.name, func(t *testing.T) {
			err := dryRunPod(d, w.mutate)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "restricted") || !strings.Contains(err.Error(), w.want) {
				t.Fatalf("want a PodSecurity rejection naming %s, got %v", w.want, err)
			}
		})
	}
}

// dryRunPod creates the Deployment's pod template as a pod with
// dryRun=All, after mutate (if any) changed a copy of its spec.
func dryRunPod(d *appsv1.Deployment, mutate func(*corev1.PodSpec)) error {
	tmpl := d.Spec.Template.DeepCopy()
	if mutate != nil {
		mutate(&tmpl.Spec)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "podlb-pss-", Namespace: installNamespace, Labels: tmpl.Labels},
		Spec:       tmpl.Spec,
	}
	_, err := kube.Client.CoreV1().Pods(installNamespace).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

func ptrTo[T any](v T) *T { return &v }
