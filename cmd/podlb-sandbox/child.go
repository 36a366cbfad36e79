package main

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

// child is a process the sandbox runs, podlb-controller in practice. It must
// never outlive the sandbox, however the sandbox ends.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error // valid once exited is closed
}

// spawn starts every child from one OS thread that never exits. Linux sends
// Pdeathsig when the thread that forked the child ends, not the process, so
// forking from an arbitrary goroutine's thread could kill the child as soon
// as the Go runtime retires that thread.
var spawn = sync.OnceValue(func() func(*exec.Cmd) error {
	type request struct {
		cmd  *exec.Cmd
		done chan error
	}
	requests := make(chan request)
	go func() {
		runtime.LockOSThread() // kept for the process's lifetime on purpose
		for r := range requests {
			r.done <- r.cmd.Start()
		}
	}()
	return func(cmd *exec.Cmd) error {
		done := make(chan error, 1)
		requests <- request{cmd, done}
		return <-done
	}
})

// startChild runs binary with args, its output going to <dir>/<name>.log.
func startChild(name, binary, dir string, env []string, args ...string) (*child, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Killed with the sandbox even when the sandbox gets SIGKILL.
		Pdeathsig: syscall.SIGKILL,
		// Ctrl-C reaches only the sandbox, which then stops the children
		// in order; stop can signal everything the child forked.
		Setpgid: true,
	}
	if err := spawn()(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// stop asks the child's process group to terminate and kills it after grace.
func (c *child) stop(grace time.Duration) {
	if c == nil {
		return
	}
	group := -c.cmd.Process.Pid
	_ = syscall.Kill(group, syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = syscall.Kill(group, syscall.SIGKILL)
		<-c.exited
	}
	_ = syscall.Kill(group, syscall.SIGKILL) // whatever it forked and left behind
}

// failure explains why the child is not doing its job, with its last log lines.
func (c *child) failure(what string) error {
	state := "still running"
	if !c.running() {
		state = fmt.Sprintf("exited: %v", c.err)
	}
	return fmt.Errorf("%s %s (%s); last lines of %s:\n%s", c.name, what, state, c.logPath, lastLines(c.logPath, 20))
}

func lastLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
