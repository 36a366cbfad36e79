// Package childproc runs helper processes (control-plane components, the
// controller under test) that must never outlive the process that started
// them, however it ends: failure, timeout, Ctrl-C or SIGKILL.
package childproc

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

// Process is a running child whose output goes to a log file.
type Process struct {
	Name    string
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // valid once exited is closed
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

// Start runs binary with args and the environment plus env, its output
// going to <logDir>/<name>.log.
func Start(name, binary, logDir string, env []string, args ...string) (*Process, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Killed with the parent even when the parent gets SIGKILL.
		Pdeathsig: syscall.SIGKILL,
		// Own process group: Ctrl-C in a terminal reaches only the parent,
		// which then stops its children in order, and Stop can signal
		// everything a child forked.
		Setpgid: true,
	}
	if err := spawn()(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the child's process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited closes when the child has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the child has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Stop asks the child's process group to terminate and kills it after
// grace.
func (p *Process) Stop(grace time.Duration) {
	if p == nil {
		return
	}
	group := -p.cmd.Process.Pid
	_ = syscall.Kill(group, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(group, syscall.SIGKILL)
		<-p.exited
	}
	_ = syscall.Kill(group, syscall.SIGKILL) // whatever it forked and left behind
}

// Failure explains why the child is not doing its job, with the end of its
// log.
func (p *Process) Failure(what string) error {
	state := "still running"
	if !p.Running() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Errorf("%s: %s (%s); last lines of %s:\n%s", p.Name, what, state, p.LogPath, LastLines(p.LogPath, 30))
}

// LastLines returns the last n lines of a file, indented, for messages.
func LastLines(path string, n int) string {
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
