//go:build !linux

package main

import (
	"context"

	"github.com/go-logr/logr"
)

// releaseExecutablePagesUntil does nothing: only Linux is asked to
// reclaim the executable's pages (see exepages_linux.go).
func releaseExecutablePagesUntil(context.Context, logr.Logger) {}
