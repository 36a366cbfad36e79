package targets

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestLedgerWithRefFindsEntriesWrittenBeforeTheRefLabel(t *testing.T) {
	ctx := context.Background()
	old := awsKey("old", 80)
	// As an earlier version wrote it: no ref label.
	legacy := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "podlb-system", Name: ledgerName(old),
			Labels:      map[string]string{ledgerLabelManagedBy: "podlb", ledgerLabelService: shortHash(old.Namespace, old.Service)},
			Annotations: map[string]string{annNamespace: old.Namespace, annService: old.Service, annPort: "80", annProvider: "aws"}},
		Data: map[string]string{"ref": "arn-shared", "targets": "10.0.0.5:8080"},
	}
	c := fake.NewClientBuilder().WithObjects(legacy).Build()
	l := NewLedger(c, c, "podlb-system")
	cur := awsKey("new", 80)
	if err := l.Put(ctx, cur, ledgerRecord(cur, "arn-shared", "10.0.0.5:8080", "10.0.0.6:8080").Entry); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, awsKey("elsewhere", 80), ledgerRecord(awsKey("elsewhere", 80), "arn-other", "10.0.0.6:8080").Entry); err != nil {
		t.Fatal(err)
	}
	entry, err := l.Get(ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := l.OursAlone(ctx, cur, entry.Ref, keysOf(entry.Targets))
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != 1 || ours[0].String() != "10.0.0.6:8080" {
		t.Errorf("deregistering %v; the legacy entry still records 10.0.0.5:8080 and another group's entry does not count", ours)
	}
	// The legacy entry got its label, so one labelled list finds it now.
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKeyFromObject(legacy), &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Labels[ledgerLabelRef] != shortHash("arn-shared") {
		t.Errorf("legacy entry labels %v", cm.Labels)
	}
	recs, err := l.WithRef(ctx, "arn-shared")
	if err != nil || len(recs) != 2 {
		t.Errorf("WithRef after relabelling: %v %+v", err, recs)
	}
}
