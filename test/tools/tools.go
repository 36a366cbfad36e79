// Package tools pins the control-plane components that test/cluster runs.
// Each subdirectory is a main package wrapping the upstream command.
package tools
