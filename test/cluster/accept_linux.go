package cluster

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// stopListening stops a listener once its accept queue is empty, so that
// no connection the kernel already completed is reset: closing a listener
// resets those, and a client that connected sees "connection reset" where
// it should have had an answer. The check and the stop are two syscalls in
// a row on the listener's descriptor (shutdown(SHUT_RD) ends listening at
// once; Close waits for the accept goroutine to wake up, which under load
// takes long enough for new connections to queue). Until deadline it
// retries while the Serve loop accepts what is queued; new connections
// are refused from then on.
func stopListening(l net.Listener, deadline time.Time) {
	tl, ok := l.(*net.TCPListener)
	if !ok {
		return
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return
	}
	for {
		stopped := false
		cerr := rc.Control(func(fd uintptr) {
			// For a listener, tcpi_unacked is the accept queue's length.
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil || info.Unacked == 0 || !time.Now().Before(deadline) {
				stopped = unix.Shutdown(int(fd), unix.SHUT_RD) == nil
			}
		})
		if cerr != nil || stopped || !time.Now().Before(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
