package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Addressing.
//
// Each cluster owns one octet X (20..250) and with it two mirrored /16s:
//
//	10.X.0.0/16   the addresses Kubernetes sees: pod IPs, node InternalIPs
//	127.X.0.0/16  where those addresses are really served on this machine
//
// The mirror is needed because the API server rejects loopback addresses in
// EndpointSlices ("may not be in the loopback range"), so pods cannot report
// 127.x IPs, while only 127.0.0.0/8 is reachable without touching the host's
// network configuration. Pod 10.a.b.c:p is served at 127.a.b.c:p; anything
// that connects to a pod (tests, cloud emulators) dials through
// LoopbackAddr or DialContext.
//
// Inside the /16, node i owns an equal block of pod addresses (its
// spec.podCIDR, the VM's alias range in GCE terms) below 10.X.240.0; node
// host IPs are 10.X.250.(i+1); the control plane listens on 127.X.255.1.
// 10.0.0.0/16 is the Service range, which no X can reach.

const (
	minOctet        = 20
	maxOctet        = 250
	podSpaceOctets  = 240 // third octets 0..239 hold pod blocks
	hostIPOctet     = 250
	controlIPOctet  = 255
	serviceIPRange  = "10.0.0.0/16"
	maxNodesPerNet  = podSpaceOctets
	lockDirName     = "podlb-cluster-locks"
	maxOctetRetries = 64
)

// LoopbackAddr maps a pod or node address as Kubernetes reports it (10.a.b.c,
// optionally with ":port") to the loopback address that really serves it
// (127.a.b.c). Other addresses are returned unchanged.
func LoopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, ""
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() {
		return addr
	}
	b := ip.As4()
	if b[0] != 10 {
		return addr
	}
	b[0] = 127
	mapped := netip.AddrFrom4(b).String()
	if port == "" {
		return mapped
	}
	return net.JoinHostPort(mapped, port)
}

// reportedAddr is the inverse of LoopbackAddr for addresses of a cluster.
func reportedAddr(loopback netip.Addr) netip.Addr {
	b := loopback.As4()
	b[0] = 10
	return netip.AddrFrom4(b)
}

// DialContext dials addr after mapping it with LoopbackAddr, so a pod IP from
// the API can be dialed as is. It fits net/http.Transport.DialContext.
func DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, LoopbackAddr(addr))
}

// HTTPClient returns a client whose connections to pod IPs reach the
// simulated backends. Keep-alives are off so every request is a fresh
// connection, which is what a test that counts failures wants.
func HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       DialContext,
			DisableKeepAlives: true,
			Proxy:             nil,
		},
	}
}

// network is one cluster's address plan; it holds a lock on its octet for
// the cluster's lifetime so parallel test processes never share addresses.
type network struct {
	octet byte
	lock  *os.File
}

func (n *network) controlPlaneIP() string {
	return fmt.Sprintf("127.%d.%d.1", n.octet, controlIPOctet)
}

func (n *network) hostIP(node int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, n.octet, hostIPOctet, byte(node + 1)})
}

// podBlock returns node i's pod prefix. Blocks are a power of two of /24s so
// they are valid CIDRs.
func (n *network) podBlock(node, nodes int) netip.Prefix {
	per := podBlockOctets(nodes)
	bits := 24
	for s := per; s > 1; s /= 2 {
		bits--
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, n.octet, byte(node * per), 0}), bits)
}

func podBlockOctets(nodes int) int {
	per := 1
	for per*2*nodes <= podSpaceOctets {
		per *= 2
	}
	return per
}

func (n *network) release() {
	if n.lock != nil {
		n.lock.Close() // closing drops the flock
		n.lock = nil
	}
}

// allocateNetwork picks a random free octet. Free means: no other cluster on
// this machine holds its lock file, and the control-plane address binds.
func allocateNetwork() (*network, error) {
	dir := filepath.Join(os.TempDir(), lockDirName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for range maxOctetRetries {
		octet := byte(minOctet + rand.IntN(maxOctet-minOctet+1))
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%d.lock", octet)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue
			}
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		n := &network{octet: octet, lock: f}
		l, err := net.Listen("tcp", net.JoinHostPort(n.controlPlaneIP(), "0"))
		if err != nil {
			n.release()
			continue
		}
		l.Close()
		return n, nil
	}
	return nil, errors.New("no free 127.X.0.0/16 address block for a local cluster")
}

// freePort asks the kernel for a free port on ip. The cluster's address is
// its own, so the port cannot be taken by another cluster before use.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
