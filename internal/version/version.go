// Package version carries the build's version, set through -ldflags.
package version

// Version is overwritten at link time by `make build`.
var Version = "dev"
