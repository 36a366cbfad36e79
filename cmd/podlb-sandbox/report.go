package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podlb/podlb/internal/version"
)

// report is the outcome of a sandbox run; --report writes it as JSON.
type report struct {
	Version  string   `json:"version"`
	Clouds   []string `json:"clouds"`
	Replicas int      `json:"replicas"`
	// The emulated timing: AWS registration and health checks, GCP
	// health checks.
	RegistrationDelay   string `json:"registrationDelay"`
	HealthCheckInterval string `json:"healthCheckInterval"`
	// Results has one entry per app and cloud.
	Results []result `json:"results"`
	// APICalls counts, per cloud and operation, the calls the emulators
	// answered while the rollouts ran (all of them podlb's) and since they
	// started (the sandbox's own set-up calls included).
	APICalls map[string]apiCalls `json:"apiCalls"`
	// Passed is true when the gated app failed no request on any cloud.
	Passed bool `json:"passed"`
	// Processes and ClusterDir identify what the sandbox started, so a
	// caller can check that nothing outlives it.
	Processes  map[string]int `json:"processes"`
	ClusterDir string         `json:"clusterDir"`
	Seconds    float64        `json:"seconds"`
}

type result struct {
	App   string `json:"app"`
	Gated bool   `json:"gated"`
	Cloud string `json:"cloud"`
	// LoadBalancer is the address the traffic went to.
	LoadBalancer string `json:"loadBalancer"`
	// Frontend says who made the load balancer: "service" (podlb, for a
	// Service of type LoadBalancer), "annotations" (the sandbox; podlb
	// fills it) or "ingress" (podlb, for an Ingress).
	Frontend string `json:"frontend"`
	// RolloutSeconds runs from the restart to the Deployment's rollout
	// being complete; SettledSeconds until the load balancer served only
	// the new pods.
	RolloutSeconds float64 `json:"rolloutSeconds"`
	SettledSeconds float64 `json:"settledSeconds"`
	Requests       int     `json:"requests"`
	Failed         int     `json:"failed"`
	// FirstErrors are a few failures as the client saw them.
	FirstErrors []string `json:"firstErrors,omitempty"`
}

type apiCalls struct {
	Rollout map[string]int64 `json:"rollout"`
	Total   map[string]int64 `json:"total"`
}

func (s *sandbox) newReport(rolloutCalls map[string]map[string]int64) *report {
	r := &report{
		Version: version.Version, Clouds: s.cfg.clouds, Replicas: s.cfg.replicas,
		RegistrationDelay:   s.cfg.timing.registrationDelay.String(),
		HealthCheckInterval: s.cfg.timing.healthCheckInterval.String(),
		APICalls:            map[string]apiCalls{},
		Passed:              true,
		Processes:           s.cluster.ProcessIDs(),
		ClusterDir:          s.cluster.Dir,
		Seconds:             time.Since(s.began).Seconds(),
	}
	r.Processes["podlb-controller"] = s.controller.Pid()
	for cloud, total := range s.clouds.apiCalls() {
		r.APICalls[cloud] = apiCalls{Rollout: rolloutCalls[cloud], Total: total}
	}
	for _, a := range s.apps {
		for _, c := range s.cfg.clouds {
			lb := a.lbs[c]
			res := lb.result()
			r.Results = append(r.Results, result{
				App: a.name, Gated: a.gated, Cloud: c, LoadBalancer: lb.addr, Frontend: a.frontend.String(),
				RolloutSeconds: a.rolledOut.Sub(a.triggered).Seconds(),
				SettledSeconds: a.settled.Sub(a.triggered).Seconds(),
				Requests:       res.OK + res.Failed, Failed: res.Failed,
				FirstErrors: firstN(res.Errors, 3),
			})
			if a.gated && res.Failed > 0 {
				r.Passed = false
			}
		}
	}
	return r
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (r *report) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nRolling update under load: %d replicas, maxSurge 1, maxUnavailable 0; NLB registration / NEG programming %s, then health checks every %s\n\n",
		r.Replicas, r.RegistrationDelay, r.HealthCheckInterval)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tCLOUD\tROLLOUT\tLB SETTLED\tREQUESTS\tFAILED\t")
	for _, res := range r.Results {
		failed := fmt.Sprint(res.Failed)
		if res.Failed > 0 {
			failed += fmt.Sprintf(" (%.1f%%)", 100*float64(res.Failed)/float64(max(res.Requests, 1)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1fs\t%.1fs\t%d\t%s\t\n", res.App, res.Cloud, res.RolloutSeconds, res.SettledSeconds, res.Requests, failed)
	}
	tw.Flush()
	for _, res := range r.Results {
		if len(res.FirstErrors) > 0 {
			fmt.Fprintf(w, "  %s/%s, first failure: %s\n", res.App, res.Cloud, res.FirstErrors[0])
		}
	}

	fmt.Fprintf(w, "\nCloud API calls during the rollouts (all of them podlb's), by operation; since start in brackets:\n")
	for _, cloud := range sortedKeys(r.APICalls) {
		calls := r.APICalls[cloud]
		var parts []string
		for _, op := range sortedKeys(calls.Total) {
			parts = append(parts, fmt.Sprintf("%s %d (%d)", op, calls.Rollout[op], calls.Total[op]))
		}
		fmt.Fprintf(w, "  %s: %s\n", cloud, wrap(strings.Join(parts, ", "), 90, "       "))
	}

	fmt.Fprintln(w)
	var gatedFailed, ungated []string
	for _, res := range r.Results {
		if res.Gated && res.Failed > 0 {
			gatedFailed = append(gatedFailed, fmt.Sprintf("%d on %s", res.Failed, res.Cloud))
		}
		if !res.Gated {
			ungated = append(ungated, fmt.Sprintf("%d of %d on %s", res.Failed, res.Requests, res.Cloud))
		}
	}
	if r.Passed {
		fmt.Fprintf(w, "PASS: with the gate, no request failed on %s; without it, %s failed.\n",
			strings.Join(r.Clouds, " or "), strings.Join(ungated, ", "))
	} else {
		fmt.Fprintf(w, "FAIL: the gated app lost requests (%s): podlb let the rollout outrun the load balancer.\n",
			strings.Join(gatedFailed, ", "))
	}
}

// wrap breaks a long comma-separated line at commas.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, part := range strings.Split(s, ", ") {
		if i > 0 {
			if line+len(part)+2 > width {
				b.WriteString(",\n" + indent)
				line = 0
			} else {
				b.WriteString(", ")
				line += 2
			}
		}
		b.WriteString(part)
		line += len(part)
	}
	return b.String()
}
