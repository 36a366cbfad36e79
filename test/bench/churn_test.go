package bench

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// runChurn is scenario 4: pods are deleted at a steady rate (their
// ReplicaSets create replacements), and the controller's reconcile queues
// are watched through its metrics.
func runChurn(ctx context.Context, e *env) error {
	cloud := e.cloud.name()
	sec := "4 churn"
	per := spread(*flagChurnPods, len(e.services))
	if err := e.scale(ctx, per); err != nil {
		return err
	}
	if err := e.waitDeployments(ctx, 30*time.Minute); err != nil {
		return err
	}
	if err := e.waitCloud(ctx, 5*time.Minute, per); err != nil {
		return err
	}
	results.set(sec, cloud, "size", "%d pods over %d Services; %d pods deleted per second for %v", sum(per), len(e.services), *flagChurnRate, *flagChurnDuration)

	before, err := e.ctrl.scrape()
	if err != nil {
		return err
	}
	e.cloud.resetCalls()
	start := time.Now()
	var (
		mu       sync.Mutex
		maxDepth = map[string]float64{}
	)
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			m, err := e.ctrl.scrape()
			if err != nil {
				continue
			}
			mu.Lock()
			for _, q := range []string{"binding", "gate"} {
				maxDepth[q] = max(maxDepth[q], m.sum("workqueue_depth", map[string]string{"name": q}))
			}
			mu.Unlock()
		}
	}()

	deleted := 0
	interval := time.Second / time.Duration(max(*flagChurnRate, 1))
	tick := time.NewTicker(interval)
	for time.Since(start) < *flagChurnDuration {
		<-tick.C
		var candidates []string
		for _, p := range e.watch.snapshot() {
			if p.terminating.IsZero() && !p.gateTrue.IsZero() {
				candidates = append(candidates, p.name)
			}
		}
		if len(candidates) == 0 {
			continue
		}
		name := candidates[rand.IntN(len(candidates))]
		err := e.kube.Client.CoreV1().Pods(benchNamespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			tick.Stop()
			close(stopSampling)
			<-sampleDone
			return err
		}
		deleted++
	}
	tick.Stop()
	churnEnd := time.Now()
	after, err := e.ctrl.scrape()
	close(stopSampling)
	<-sampleDone
	if err != nil {
		return err
	}
	// Catching up: every replacement gated True and registered.
	if err := e.waitDeployments(ctx, 10*time.Minute); err != nil {
		return err
	}
	if err := e.waitCloud(ctx, 5*time.Minute, per); err != nil {
		return err
	}
	caughtUp := time.Since(churnEnd)

	results.set(sec, cloud, "pods deleted (and replaced)", "%d in %s", deleted, round(churnEnd.Sub(start)))
	for _, q := range []string{"binding", "gate"} {
		results.set(sec, cloud, "queue "+q+": max depth (1 s samples)", "%.0f", maxDepth[q])
	}
	reportQueues(sec, cloud, before, after, "binding", "gate")
	reportDeregistrations(sec, cloud, before, after)
	e.reportPods(sec+" replacements", start, churnEnd)
	results.set(sec, cloud, "caught up after churn stopped", "%s", round(caughtUp))
	e.reportCalls(sec, start, churnEnd)
	return e.scale(ctx, make([]int32, len(e.services)))
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
