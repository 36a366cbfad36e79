package targets

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
)

func TestBindingErrorsReportOnlyFailingBindingsWithTheirClass(t *testing.T) {
	reg := NewRegistry()
	web := types.NamespacedName{Namespace: "shop", Name: "web"}
	k80, k443, k8080 := awsKey("web", 80), awsKey("web", 443), awsKey("web", 8080)
	reg.SetService(&ServiceEntry{Name: web}, []*providers.Binding{{Key: k80}, {Key: k443}, {Key: k8080}})
	reg.SetStatus(k80, &BindingStatus{Error: "not-found: DescribeTargetGroups: TargetGroupNotFound: one or more target groups not found"})
	reg.SetStatus(k443, &BindingStatus{Desired: 2, Registered: 2})
	reg.SetStatus(k8080, &BindingStatus{Error: "something without a class"})

	c := &bindingErrors{}
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("without a registry nothing is reported, got %d series", n)
	}
	c.reg.Store(reg)
	want := `
# HELP podlb_binding_errors 1 for every binding whose last reconcile failed (the error in its status), by error class; bindings that work are not reported.
# TYPE podlb_binding_errors gauge
podlb_binding_errors{class="not-found",namespace="shop",port="80",provider="aws",service="web"} 1
podlb_binding_errors{class="transient",namespace="shop",port="8080",provider="aws",service="web"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
