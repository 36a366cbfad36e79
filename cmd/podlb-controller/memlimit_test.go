package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestSetMemoryLimitFollowsTheContainer(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	dir := t.TempDir()
	file := filepath.Join(dir, "memory.max")
	os.WriteFile(file, []byte("268435456\n"), 0o644)
	if got := setMemoryLimit(file); got != 268435456/10*9 {
		t.Fatalf("soft limit %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 268435456/10*9 {
		t.Fatalf("runtime limit %d", got)
	}
	os.WriteFile(file, []byte("max\n"), 0o644)
	if got := setMemoryLimit(file); got != 0 {
		t.Fatalf("no container limit, but set %d", got)
	}
	t.Setenv("GOMEMLIMIT", "100MiB")
	os.WriteFile(file, []byte("268435456\n"), 0o644)
	if got := setMemoryLimit(file); got != 0 {
		t.Fatalf("GOMEMLIMIT given, but set %d", got)
	}
}
