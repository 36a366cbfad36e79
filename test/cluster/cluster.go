// Package cluster runs a local Kubernetes cluster for tests, the sandbox and
// benchmarks: real etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler processes, plus NodeSim, an in-process stand-in for the
// kubelets of a few nodes that gives every pod an address, a real HTTP
// backend and kubelet-accurate status.
//
// One cluster per test package: start it in TestMain with RunMain and get it
// in tests with Require.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podlb/podlb/internal/childproc"
)

// Options describe the cluster to start. The zero value is a 3-node AWS
// cluster in us-east-1a/b/c.
type Options struct {
	// Nodes is the number of simulated nodes (default 3, at most 240).
	Nodes int
	// Zones the nodes are spread over round-robin (default: three zones of
	// Region).
	Zones []string
	// Cloud selects the providerID form: "aws" (default) gives
	// aws:///<zone>/<instance-id>, "gce" gives gce://<project>/<zone>/<name>.
	Cloud string
	// Region defaults to us-east-1 (aws) or us-central1 (gce).
	Region string
	// GCEProject defaults to "podlb-test".
	GCEProject string
	// ReadyAfter is how long a started container takes to become ready
	// (default 200ms); the pod annotation sim.podlb.io/ready-after overrides it.
	ReadyAfter time.Duration
	// Logf receives progress and errors of the cluster and the simulator;
	// nil discards them.
	Logf func(format string, args ...any)
	// KeepDir keeps the working directory (component logs, etcd data)
	// after Stop, for post-mortems.
	KeepDir bool
}

// Cluster is a running local cluster.
type Cluster struct {
	// Config connects as a cluster administrator (group system:masters).
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for the same identity,
	// usable by kubectl and by programs under test.
	Kubeconfig string
	// Client and CRClient are ready-made clients built from Config.
	Client   kubernetes.Interface
	CRClient client.Client
	// Sim is the node simulator: pod addresses, backends, readiness.
	Sim *NodeSim
	// Nodes are the simulated nodes, in creation order.
	Nodes []Node
	// Dir holds component logs (<component>.log) and etcd data.
	Dir string
	// Cloud, Region and GCEProject are the effective options.
	Cloud, Region, GCEProject string

	opts Options
	net  *network
	// mu guards procs, which Restart changes while tests run.
	mu    sync.Mutex
	procs []*childproc.Process // start order
	// How to start etcd and kube-apiserver again (Restart).
	restartable map[string]component
	stopOnce    sync.Once
	logf        func(string, ...any)
}

// Node is a simulated node as the cloud would know it.
type Node struct {
	Name       string
	Zone       string
	Region     string
	ProviderID string
	// VMName is the cloud's name for the machine: the EC2 instance ID on
	// AWS, the instance name (equal to the node name) on GCE.
	VMName string
	// HostIP is the node's InternalIP as Kubernetes reports it.
	HostIP string
	// PodCIDR is the block this node's pod IPs come from (the VM's alias
	// range on GCE).
	PodCIDR string
}

func (o *Options) setDefaults() error {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 0 || o.Nodes > maxNodesPerNet {
		return fmt.Errorf("nodes must be within 1..%d, got %d", maxNodesPerNet, o.Nodes)
	}
	if o.Cloud == "" {
		o.Cloud = "aws"
	}
	switch o.Cloud {
	case "aws":
		if o.Region == "" {
			o.Region = "us-east-1"
		}
		if len(o.Zones) == 0 {
			o.Zones = []string{o.Region + "a", o.Region + "b", o.Region + "c"}
		}
	case "gce":
		if o.Region == "" {
			o.Region = "us-central1"
		}
		if len(o.Zones) == 0 {
			o.Zones = []string{o.Region + "-a", o.Region + "-b", o.Region + "-c"}
		}
		if o.GCEProject == "" {
			o.GCEProject = "podlb-test"
		}
	default:
		return fmt.Errorf("cloud must be \"aws\" or \"gce\", got %q", o.Cloud)
	}
	if o.ReadyAfter == 0 {
		o.ReadyAfter = 200 * time.Millisecond
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// Start brings up etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and the node simulator, and returns once the API serves and
// the nodes are schedulable. ctx bounds start-up only; call Stop to tear
// down. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	binDir, err := BinaryDir()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	c := &Cluster{opts: opts, logf: opts.Logf, Cloud: opts.Cloud, Region: opts.Region, GCEProject: opts.GCEProject}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()

	if c.net, err = allocateNetwork(); err != nil {
		return nil, err
	}
	removeAbandonedDirs(c.net.octet)
	if c.Dir, err = os.MkdirTemp("", fmt.Sprintf("podlb-cluster-%d-", c.net.octet)); err != nil {
		return nil, err
	}
	ip := c.net.controlPlaneIP()
	certs, err := newPKI(c.Dir, []string{ip, "127.0.0.1"})
	if err != nil {
		return nil, err
	}

	etcdURL, err := c.startEtcd(ctx, binDir, ip)
	if err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, binDir, ip, etcdURL, certs); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(certs); err != nil {
		return nil, err
	}
	if err := c.startControllers(binDir); err != nil {
		return nil, err
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if c.CRClient, err = client.New(c.Config, client.Options{Scheme: scheme.Scheme}); err != nil {
		return nil, err
	}
	if err := c.waitForDefaultNamespace(ctx); err != nil {
		return nil, err
	}
	c.Nodes = c.planNodes()
	if c.Sim, err = startNodeSim(ctx, c); err != nil {
		return nil, err
	}
	for _, p := range c.procs {
		if !p.Running() {
			return nil, p.Failure("exited during start-up")
		}
	}
	c.logf("cluster: up in %v (api %s, %d nodes, pods in 10.%d.0.0/16 served on 127.%d.0.0/16, dir %s)",
		time.Since(began).Round(time.Millisecond), c.Config.Host, len(c.Nodes), c.net.octet, c.net.octet, c.Dir)
	return c, nil
}

func (c *Cluster) startEtcd(ctx context.Context, binDir, ip string) (string, error) {
	clientPort, err := freePort(ip)
	if err != nil {
		return "", err
	}
	peerPort, err := freePort(ip)
	if err != nil {
		return "", err
	}
	clientURL := fmt.Sprintf("http://%s:%d", ip, clientPort)
	peerURL := fmt.Sprintf("http://%s:%d", ip, peerPort)
	err = c.run(ctx, "etcd", component{binary: filepath.Join(binDir, "etcd"), ready: clientURL + "/health", client: http.DefaultClient, timeout: 30 * time.Second, args: []string{
		"--name=default",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		// Test data is disposable; fsync dominates etcd latency on small disks.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}})
	return clientURL, err
}

// component is how to start a control-plane process and know it serves.
type component struct {
	binary  string
	args    []string
	ready   string // a URL that answers 200 once it serves
	client  *http.Client
	timeout time.Duration
}

// run starts a component, remembers how for Restart, and waits until it
// serves.
func (c *Cluster) run(ctx context.Context, name string, comp component) error {
	p, err := childproc.Start(name, comp.binary, c.Dir, nil, comp.args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	if c.restartable == nil {
		c.restartable = map[string]component{}
	}
	c.restartable[name] = comp
	c.mu.Unlock()
	return waitHTTP(ctx, p, comp.client, comp.ready, comp.timeout)
}

func (c *Cluster) startAPIServer(ctx context.Context, binDir, ip, etcdURL string, certs *pki) error {
	port, err := freePort(ip)
	if err != nil {
		return err
	}
	host := net.JoinHostPort(ip, strconv.Itoa(port))
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + ip,
		"--advertise-address=" + ip,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + c.Dir,
		"--tls-cert-file=" + certs.serverCertFile,
		"--tls-private-key-file=" + certs.serverKeyFile,
		"--client-ca-file=" + certs.caFile,
		"--service-account-issuer=https://" + host,
		"--service-account-key-file=" + certs.saKeyFile,
		"--service-account-signing-key-file=" + certs.saKeyFile,
		"--service-cluster-ip-range=" + serviceIPRange,
		"--authorization-mode=RBAC",
		// No token controller runs, so pods must not need a service account token.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		// The advertise address is loopback, which Endpoints reject.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certs.caPEM)
	pair, err := tls.X509KeyPair(certs.adminCertPEM, certs.adminKeyPEM)
	if err != nil {
		return err
	}
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	err = c.run(ctx, "kube-apiserver", component{binary: filepath.Join(binDir, "kube-apiserver"), args: args,
		ready: "https://" + host + "/readyz", client: httpc, timeout: 60 * time.Second})
	httpc.CloseIdleConnections()
	if err != nil {
		return err
	}

	c.Config = &rest.Config{
		Host: "https://" + host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   certs.caPEM,
			CertData: certs.adminCertPEM,
			KeyData:  certs.adminKeyPEM,
		},
		// Tests create thousands of objects; client-side throttling would
		// measure the client, not the system.
		QPS:   1000,
		Burst: 2000,
	}
	return nil
}

// Restart kills a control-plane component, "etcd" or "kube-apiserver"
// (SIGKILL: no draining of watches, as in a crash), and starts it again
// on the same address with the same flags and data after down. It returns
// once the component serves again. Without kube-apiserver, clients see
// their connections reset and their watches end; without etcd, the API
// answers errors and its watches stall until etcd is back.
func (c *Cluster) Restart(ctx context.Context, name string, down time.Duration) error {
	c.mu.Lock()
	comp, ok := c.restartable[name]
	var old *childproc.Process
	for i, p := range c.procs {
		if p.Name == name {
			old = p
			c.procs = append(c.procs[:i:i], c.procs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	if !ok || old == nil {
		return fmt.Errorf("no %s to restart", name)
	}
	old.Stop(0)
	time.Sleep(down)
	return c.run(ctx, name, comp)
}

func (c *Cluster) writeKubeconfig(certs *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["podlb"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: certs.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: certs.adminCertPEM, ClientKeyData: certs.adminKeyPEM}
	cfg.Contexts["podlb"] = &clientcmdapi.Context{Cluster: "podlb", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "podlb"
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return clientcmd.WriteToFile(*cfg, c.Kubeconfig)
}

func (c *Cluster) startControllers(binDir string) error {
	kcm, err := childproc.Start("kube-controller-manager", filepath.Join(binDir, "kube-controller-manager"), c.Dir, nil,
		"--kubeconfig="+c.Kubeconfig,
		// What rollouts, Services and namespace clean-up need; the node
		// lifecycle controller's job is done by NodeSim.
		"--controllers=deployment,replicaset,endpointslice,garbagecollector,namespace",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--concurrent-service-endpoint-syncs=10",
		"--concurrent-gc-syncs=10",
		"--concurrent-namespace-syncs=5",
		"--endpointslice-updates-batch-period=50ms",
		"--kube-api-qps=1000",
		"--kube-api-burst=2000",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, kcm)

	schedConfig := filepath.Join(c.Dir, "scheduler.yaml")
	// Short back-off so pods that raced the nodes' taint removal are
	// retried quickly; high QPS for bulk scheduling.
	if err := os.WriteFile(schedConfig, []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: `+c.Kubeconfig+`
  qps: 1000
  burst: 2000
leaderElection:
  leaderElect: false
podInitialBackoffSeconds: 1
podMaxBackoffSeconds: 2
`), 0o600); err != nil {
		return err
	}
	sched, err := childproc.Start("kube-scheduler", filepath.Join(binDir, "kube-scheduler"), c.Dir, nil,
		"--config="+schedConfig,
		"--secure-port=0",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, sched)
	return nil
}

func (c *Cluster) waitForDefaultNamespace(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			c.logf("cluster: waiting for namespace default: %v", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace default never appeared: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHTTP polls url until it answers 200, the process dies or time runs out.
func waitHTTP(ctx context.Context, p *childproc.Process, httpc *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := httpc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Exited():
			return p.Failure("not ready")
		case <-ctx.Done():
			return p.Failure(fmt.Sprintf("not ready at %s within %v", url, timeout))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop tears everything down: the simulator's backends, then the components
// in reverse start order, each with SIGTERM and, after a grace period,
// SIGKILL to its process group. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		began := time.Now()
		if c.Sim != nil {
			c.Sim.stop()
		}
		c.mu.Lock()
		procs := slices.Clone(c.procs)
		c.mu.Unlock()
		// Controllers first, together: they only talk to the API server.
		var wg sync.WaitGroup
		for _, p := range procs {
			if p.Name == "kube-controller-manager" || p.Name == "kube-scheduler" {
				wg.Go(func() { p.Stop(5 * time.Second) })
			}
		}
		wg.Wait()
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			if p.Name == "kube-apiserver" || p.Name == "etcd" {
				// The API server drains open watches for a long while on
				// SIGTERM; nothing it holds outlives the cluster, so a
				// short grace is enough.
				p.Stop(2 * time.Second)
			}
		}
		if c.net != nil {
			c.net.release()
		}
		if c.Dir != "" {
			if c.opts.KeepDir {
				_ = os.WriteFile(filepath.Join(c.Dir, keptMarker), nil, 0o644)
			} else if err := os.RemoveAll(c.Dir); err != nil {
				c.logf("cluster: remove %s: %v", c.Dir, err)
			}
		}
		c.logf("cluster: stopped in %v", time.Since(began).Round(time.Millisecond))
	})
}

// PodNetwork is the /16 every pod and node address of this cluster comes
// from, as Kubernetes reports them (e.g. for an emulated VPC's CIDRs). Its
// loopback mirror, where the backends listen, is LoopbackAddr of it.
func (c *Cluster) PodNetwork() string {
	return fmt.Sprintf("10.%d.0.0/16", c.net.octet)
}

// keptMarker marks a working directory kept on purpose (Options.KeepDir).
const keptMarker = "KEPT"

// removeAbandonedDirs deletes working directories of earlier clusters that
// used octet and died without Stop (a killed test binary). Holding the
// octet's lock proves they are dead; directories kept on purpose stay.
func removeAbandonedDirs(octet byte) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("podlb-cluster-%d-*", octet)))
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, keptMarker)); os.IsNotExist(err) {
			_ = os.RemoveAll(dir)
		}
	}
}

// ProcessIDs returns the PIDs of the control-plane processes, for tests that
// check clean-up.
func (c *Cluster) ProcessIDs() map[string]int {
	ids := map[string]int{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		ids[p.Name] = p.Pid()
	}
	return ids
}

// planNodes lays out node names, zones, provider IDs and addresses.
func (c *Cluster) planNodes() []Node {
	nodes := make([]Node, c.opts.Nodes)
	for i := range nodes {
		zone := c.opts.Zones[i%len(c.opts.Zones)]
		host := c.net.hostIP(i)
		n := Node{Zone: zone, Region: c.opts.Region, HostIP: host.String(), PodCIDR: c.net.podBlock(i, len(nodes)).String()}
		switch c.opts.Cloud {
		case "aws":
			// EC2 instance IDs are i- and 17 hex digits; the octet keeps IDs
			// of parallel clusters apart.
			n.VMName = fmt.Sprintf("i-%017x", uint64(c.net.octet)<<32|uint64(i+1))
			b := host.As4()
			n.Name = fmt.Sprintf("ip-%d-%d-%d-%d.%s.compute.internal", b[0], b[1], b[2], b[3], c.opts.Region)
			n.ProviderID = fmt.Sprintf("aws:///%s/%s", zone, n.VMName)
		case "gce":
			// GCE instance names are unique per project and zone; the octet
			// keeps the nodes of clusters sharing one emulated project apart.
			n.Name = fmt.Sprintf("podlb-%d-node-%d", c.net.octet, i)
			n.VMName = n.Name
			n.ProviderID = fmt.Sprintf("gce://%s/%s/%s", c.opts.GCEProject, zone, n.Name)
		}
		nodes[i] = n
	}
	return nodes
}

// nodeObject is the Node as the kubelet would register it.
func (c *Cluster) nodeObject(n Node) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name,
			Labels: map[string]string{
				corev1.LabelHostname:              n.Name,
				corev1.LabelTopologyZone:          n.Zone,
				corev1.LabelTopologyRegion:        n.Region,
				corev1.LabelOSStable:              "linux",
				corev1.LabelArchStable:            "amd64",
				corev1.LabelInstanceTypeStable:    "sim.large",
				"node.kubernetes.io/sim-provider": c.opts.Cloud,
			},
		},
		Spec: corev1.NodeSpec{
			ProviderID: n.ProviderID,
			PodCIDR:    n.PodCIDR,
			PodCIDRs:   []string{n.PodCIDR},
		},
	}
}
