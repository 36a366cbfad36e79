package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/childproc"
	"github.com/podlb/podlb/test/cluster"
)

// helperEnv makes the test binary start a cluster, print its process IDs
// and hang, so a test can kill it and look for survivors.
const helperEnv = "PODLB_CLUSTER_ORPHAN_HELPER"

func runOrphanHelper() {
	c, err := cluster.Start(context.Background(), cluster.Options{Nodes: 1})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	var pids []string
	for _, pid := range c.ProcessIDs() {
		pids = append(pids, strconv.Itoa(pid))
	}
	fmt.Println("DIR", c.Dir)
	fmt.Println("PIDS", strings.Join(pids, " "))
	select {}
}

func TestStopLeavesNoProcess(t *testing.T) {
	cluster.Require(t) // only with control-plane tests
	ctx := testContext(t)
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 2, Cloud: "gce", GCEProject: "proj"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if got, want := c.Nodes[1].ProviderID, "gce://proj/us-central1-b/"+c.Nodes[1].Name; got != want {
		t.Errorf("providerID = %q, want %q", got, want)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "sim", Ports: []corev1.ContainerPort{{ContainerPort: 9000}}}}},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip string
	waitFor(t, ctx, "backend", func() (bool, error) {
		ip = c.Sim.PodIP("default", "p")
		return ip != "", nil
	})
	get(t, ip, 9000)

	pids := c.ProcessIDs()
	dir := c.Dir
	c.Stop()
	for name, pid := range pids {
		if childproc.Alive(pid) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
	for _, pid := range childrenMentioning(dir) {
		t.Errorf("pid %d of the stopped cluster still running", pid)
	}
	if _, _, err := tryGet(ip, 9000); err == nil {
		t.Errorf("pod backend still answers after Stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("working directory %s left behind", dir)
	}
}

func TestKilledTestBinaryLeavesNoProcess(t *testing.T) {
	cluster.Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pids []int
	var dir string
	lines := bufio.NewScanner(out)
	for len(pids) == 0 && lines.Scan() {
		fields := strings.Fields(lines.Text())
		switch {
		case len(fields) > 0 && fields[0] == "ERROR":
			t.Fatal(lines.Text())
		case len(fields) == 2 && fields[0] == "DIR":
			dir = fields[1]
		case len(fields) > 1 && fields[0] == "PIDS":
			for _, f := range fields[1:] {
				pid, _ := strconv.Atoi(f)
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) != 4 {
		t.Fatalf("helper reported pids %v", pids)
	}
	for _, pid := range pids {
		if !childproc.Alive(pid) {
			t.Fatalf("pid %d not running before the kill", pid)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for childproc.Alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d survived the test binary being killed", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A killed binary cannot clean its directory; don't leave it to pile up.
	if strings.HasPrefix(filepath.Base(dir), "podlb-cluster-") {
		os.RemoveAll(dir)
	}
}

// childrenMentioning lists live children of this process whose command line
// mentions dir (every component gets paths inside its cluster's directory).
func childrenMentioning(dir string) []int {
	var found []int
	for _, pid := range childproc.Mentioning(dir) {
		if childproc.Parent(pid) == os.Getpid() {
			found = append(found, pid)
		}
	}
	return found
}
