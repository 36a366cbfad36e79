package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podlb/podlb/internal/childproc"
	"github.com/podlb/podlb/internal/kubectlplugin"
)

// TestSandbox runs the real sandbox binary in a short configuration with
// --keep, reads its JSON report, interrupts it as a user would with Ctrl-C
// and checks that nothing it started survives.
func TestSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster, both emulators and the controller")
	}
	sandbox := sandboxBinary(t)
	reportPath := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(sandbox, "--replicas=3", "--registration-delay=2s", "--health-check-interval=200ms",
		"--report="+reportPath, "--keep")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		outMu sync.Mutex
		out   strings.Builder
	)
	output := func() string {
		outMu.Lock()
		defer outMu.Unlock()
		return out.String() + stderr.String()
	}
	kept := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			outMu.Lock()
			out.WriteString(sc.Text() + "\n")
			outMu.Unlock()
			if !signalled && strings.Contains(sc.Text(), "keeps running until Ctrl-C") {
				signalled = true
				close(kept)
			}
		}
	}()

	select {
	case <-kept:
	case <-readDone:
		_ = cmd.Wait()
		t.Fatalf("sandbox ended before keeping everything running (%v):\n%s", cmd.ProcessState, output())
	case <-time.After(6 * time.Minute):
		_ = cmd.Process.Signal(syscall.SIGINT)
		<-readDone
		_ = cmd.Wait()
		t.Fatalf("sandbox did not finish its rollout within 6 minutes:\n%s", output())
	}

	var rep report
	data, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatalf("report: %v\n%s", err, output())
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, data)
	}
	// Everything still runs under --keep: the controller is there.
	if pid := rep.Processes["podlb-controller"]; pid == 0 || !childproc.Alive(pid) {
		t.Errorf("podlb-controller (pid %d) is not running under --keep", pid)
	}
	checkPlugin(t, filepath.Join(rep.ClusterDir, "kubeconfig"), output(), &rep)

	// Ctrl-C: the sandbox tears everything down and exits cleanly.
	interrupted := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-readDone
	if err := cmd.Wait(); err != nil {
		t.Errorf("sandbox after Ctrl-C: %v", err)
	}
	t.Logf("teardown took %v; sandbox output:\n%s", time.Since(interrupted).Round(time.Millisecond), output())
	// podlb deleted the load balancers it provisioned, and the sandbox
	// asked the emulators whether anything of them is left.
	if !strings.Contains(output(), "deleted Service gated, Service ungated, Ingress sandbox-shop: podlb removed the load balancers it provisioned, nothing of theirs is left") {
		t.Errorf("the teardown did not report podlb's load balancers deleted and nothing left")
	}

	checkReport(t, &rep)
	for name, pid := range rep.Processes {
		if childproc.Alive(pid) && strings.Contains(childproc.Cmdline(pid), rep.ClusterDir) {
			t.Errorf("%s (pid %d) survived the sandbox", name, pid)
		}
	}
	if leftovers := describe(childproc.Mentioning(rep.ClusterDir)); len(leftovers) > 0 {
		t.Errorf("processes still refer to the sandbox's directory %s: %v", rep.ClusterDir, leftovers)
	}
	if _, err := os.Stat(rep.ClusterDir); !os.IsNotExist(err) {
		t.Errorf("the cluster directory %s was not removed (%v)", rep.ClusterDir, err)
	}
}

// checkPlugin follows the --keep hints: kubectl podlb check finds the
// controller leading and names the ungated app's pods, which lack the gate;
// kubectl podlb status shows the gated app's load balancer at the address
// the sandbox sent its traffic to.
func checkPlugin(t *testing.T, kubeconfig, sandboxOutput string, rep *report) {
	t.Helper()
	if !strings.Contains(sandboxOutput, "kubectl podlb check") {
		t.Errorf("the --keep hints do not mention kubectl podlb")
	}
	var out bytes.Buffer
	err := kubectlplugin.Run(context.Background(), []string{"--kubeconfig", kubeconfig, "-n", namespace, "check"},
		genericiooptions.IOStreams{Out: &out, ErrOut: &out})
	t.Logf("kubectl podlb check:\n%s", out.String())
	var failed kubectlplugin.ChecksFailed
	if !errors.As(err, &failed) {
		t.Errorf("check of the sandbox: %v, want the ungated app's pods found", err)
	}
	squeezed := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{"ok controller", "service default/ungated", "pods lack readinessGates", "3 of 3 pods list readinessGates",
		"ok service default/gated load balancer default/gated at "} {
		if !strings.Contains(squeezed, want) {
			t.Errorf("check output lacks %q", want)
		}
	}

	out.Reset()
	if err := kubectlplugin.Run(context.Background(), []string{"--kubeconfig", kubeconfig, "-n", namespace, "status", "svc/gated"},
		genericiooptions.IOStreams{Out: &out, ErrOut: &out}); err != nil {
		t.Errorf("status svc/gated: %v", err)
	}
	t.Logf("kubectl podlb status svc/gated:\n%s", out.String())
	squeezed = strings.Join(strings.Fields(out.String()), " ")
	for _, r := range rep.Results {
		if r.App != "gated" || r.Cloud != "gcp" {
			continue
		}
		// GCP's address is the IP the emulator's forwarding rule listens on.
		ip, _, _ := strings.Cut(r.LoadBalancer, ":")
		for _, want := range []string{"type LoadBalancer, class podlb.io/load-balancer", "gcp " + ip + " 80/TCP 0 ok"} {
			if !strings.Contains(squeezed, want) {
				t.Errorf("status svc/gated lacks %q", want)
			}
		}
	}
}

func checkReport(t *testing.T, rep *report) {
	t.Helper()
	if !rep.Passed {
		t.Errorf("report says the gated app failed requests")
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[fmt.Sprintf("%s/%s", r.App, r.Cloud)] = true
		if r.Requests < 50 {
			t.Errorf("%s/%s: only %d requests went through the load balancer", r.App, r.Cloud, r.Requests)
		}
		if r.Gated && r.Failed != 0 {
			t.Errorf("%s/%s: the gated app failed %d requests: %v", r.App, r.Cloud, r.Failed, r.FirstErrors)
		}
		want := "service"
		if r.App == "shop" {
			want = "ingress"
		}
		if r.Frontend != want {
			t.Errorf("%s/%s: load balancer made by %q, want %q (podlb provisions it)", r.App, r.Cloud, r.Frontend, want)
		}
		if r.RolloutSeconds <= 0 || r.SettledSeconds < r.RolloutSeconds {
			t.Errorf("%s/%s: rollout %.1fs, settled %.1fs: the rollout did not happen as reported", r.App, r.Cloud, r.RolloutSeconds, r.SettledSeconds)
		}
	}
	for _, want := range []string{"gated/aws", "gated/gcp", "ungated/aws", "ungated/gcp", "shop/aws", "shop/gcp"} {
		if !seen[want] {
			t.Errorf("no result for %s in %+v", want, rep.Results)
		}
	}
	// A rollout replaces every pod: podlb registered and deregistered
	// targets on both clouds while it ran.
	for cloud, ops := range map[string][]string{
		"aws": {"RegisterTargets", "DeregisterTargets", "DescribeTargetHealth"},
		"gcp": {"networkEndpointGroups.attachNetworkEndpoints", "networkEndpointGroups.detachNetworkEndpoints", "backendServices.getHealth"},
	} {
		for _, op := range ops {
			if rep.APICalls[cloud].Rollout[op] == 0 || rep.APICalls[cloud].Total[op] < rep.APICalls[cloud].Rollout[op] {
				t.Errorf("%s %s: %d calls during the rollout, %d in total", cloud, op, rep.APICalls[cloud].Rollout[op], rep.APICalls[cloud].Total[op])
			}
		}
	}
	if len(rep.Processes) < 5 || rep.ClusterDir == "" {
		t.Errorf("report lists processes %v and directory %q; want the control plane and the controller", rep.Processes, rep.ClusterDir)
	}
}

// sandboxBinary returns bin/podlb-sandbox of this repository, which `make
// test` builds first, or builds it (with the controller and the plugin
// beside it) when one of them is missing.
func sandboxBinary(t *testing.T) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin")
	sandbox, controller, plugin := filepath.Join(bin, "podlb-sandbox"), filepath.Join(bin, "podlb-controller"), filepath.Join(bin, "kubectl-podlb")
	if isFile(sandbox) && isFile(controller) && isFile(plugin) {
		return sandbox
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/podlb-sandbox", "./cmd/podlb-controller", "./cmd/kubectl-podlb")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The control-plane binaries are found through the working directory
	// (bin/k8s above it) or PODLB_K8S_BIN, as for every cluster test.
	return filepath.Join(dir, "podlb-sandbox")
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/podlb/podlb\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no podlb go.mod above the working directory")
		}
		dir = parent
	}
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// describe gives each pid with its command line, for messages.
func describe(pids []int) []string {
	out := make([]string, len(pids))
	for i, pid := range pids {
		out[i] = fmt.Sprintf("%d: %s", pid, childproc.Cmdline(pid))
	}
	return out
}
