package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Children are started with Pdeathsig=SIGKILL so that they die with the test
// binary however it ends (failure, timeout panic, SIGKILL). Linux delivers
// the signal when the *thread* that forked the child exits, not the process,
// so every fork happens on one goroutine locked to its OS thread that never
// returns; the thread therefore lives exactly as long as the process.
type startRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var forkThread = sync.OnceValue(func() chan<- startRequest {
	requests := make(chan startRequest)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread must not be reused or exit
		for r := range requests {
			r.done <- r.cmd.Start()
		}
	}()
	return requests
})

// process is one control-plane component.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	exited  chan struct{}
	waitErr error
}

func startProcess(name, binary, logDir string, args ...string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL,
		// Own process group: Ctrl-C in a terminal reaches only the test
		// binary, which then tears the cluster down in order; Stop can
		// signal the whole group.
		Setpgid: true,
	}
	done := make(chan error, 1)
	forkThread() <- startRequest{cmd: cmd, done: done}
	if err := <-done; err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, log: logFile, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	if p == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	// Anything the component forked itself lives in its group too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// failure describes why a component is not up, with the end of its log.
func (p *process) failure(what string) error {
	state := "still running"
	if !p.running() {
		state = fmt.Sprintf("exited: %v", p.waitErr)
	}
	return fmt.Errorf("%s: %s (%s); log %s:\n%s", p.name, what, state, p.logPath, tailFile(p.logPath, 30))
}

func tailFile(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// Binaries.

// BinaryEnv names the directory holding kube-apiserver, kube-controller-manager,
// kube-scheduler and etcd; the Makefile exports it to tests.
const BinaryEnv = "PODLB_K8S_BIN"

var requiredBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// BinaryDir finds the control-plane binaries: $PODLB_K8S_BIN, else the
// nearest bin/k8s above the working directory.
func BinaryDir() (string, error) {
	if dir := os.Getenv(BinaryEnv); dir != "" {
		if err := checkBinaries(dir); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, dir, err)
		}
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		candidate := filepath.Join(dir, "bin", "k8s")
		if checkBinaries(candidate) == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("control-plane binaries not found: set %s or run `make tools` (looked for bin/k8s/{%s} above %s)",
				BinaryEnv, strings.Join(requiredBinaries, ","), wd)
		}
		dir = parent
	}
}

func checkBinaries(dir string) error {
	var missing []string
	for _, b := range requiredBinaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s in %s (run `make tools`)", strings.Join(missing, ", "), dir)
	}
	return nil
}
