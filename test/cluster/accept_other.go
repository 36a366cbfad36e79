//go:build !linux

package cluster

import (
	"net"
	"time"
)

// stopListening is Linux-only; elsewhere closing the listener may reset
// connections still queued for accept.
func stopListening(net.Listener, time.Time) {}
