// Command podlb-sandbox is what `make demo` runs: a local cluster (real
// control plane, simulated nodes), the AWS and GCP emulators, and the real
// podlb-controller binary configured for both clouds. It puts a sample app
// behind a Service of type LoadBalancer twice, once with podlb's readiness
// gate and once without, for which podlb provisions a Network Load
// Balancer and a TCP proxy load balancer (or, with --annotations-only, the
// sandbox creates them and podlb only fills them), and a third, gated,
// behind an Ingress whose Application Load Balancers podlb provisions; it
// rolls them out under steady traffic and reports what a client saw and
// what the clouds were asked. At the end it deletes what podlb provisioned
// and checks that podlb left nothing of it in the clouds.
//
// With --keep everything stays up until Ctrl-C, to explore with kubectl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/childproc"
	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/internal/version"
	"github.com/podlb/podlb/test/cluster"
)

const (
	clusterName         = "sandbox"
	controllerNamespace = "podlb-system"
	// Traffic per load balancer: each request is a new TCP connection, as
	// a load balancer sees clients, so a connection that finds no healthy
	// target shows up as a failure.
	loadWorkers  = 2
	loadInterval = 25 * time.Millisecond
	// settleTime keeps traffic flowing after a rollout has settled, while
	// the last old pods finish draining.
	settleTime     = 2 * time.Second
	rolloutTimeout = 5 * time.Minute
)

// Exit codes beyond 0 and 1 (the sandbox could not do its job).
const (
	exitGatedFailures = 2
	// exitLeftovers: podlb left something it provisioned in a cloud.
	exitLeftovers = 3
)

type config struct {
	replicas int
	timing   timing
	clouds   []string
	report   string
	keep     bool
	verbose  bool
	ingress  bool
	// annotationsOnly: the sandbox makes the Service apps' load balancers
	// and binds them by annotation, instead of podlb provisioning them.
	annotationsOnly bool
}

func main() {
	var cfg config
	var clouds string
	flag.IntVar(&cfg.replicas, "replicas", 6, "replicas of each sample Deployment")
	flag.DurationVar(&cfg.timing.registrationDelay, "registration-delay", 4*time.Second,
		"emulated time before a new target gets traffic: the NLB's registration on AWS, the NEG's programming on GCP (real clouds: tens of seconds to minutes)")
	flag.DurationVar(&cfg.timing.healthCheckInterval, "health-check-interval", 200*time.Millisecond,
		"emulated health check interval of both clouds (2 passes make a target healthy)")
	flag.StringVar(&clouds, "clouds", "aws,gcp", "clouds to emulate and put the apps behind: aws, gcp or both")
	flag.StringVar(&cfg.report, "report", "", "also write the report as JSON to this file")
	flag.BoolVar(&cfg.keep, "keep", false, "after the report, keep everything running until Ctrl-C")
	flag.BoolVar(&cfg.verbose, "v", false, "log cluster and emulator details")
	flag.BoolVar(&cfg.ingress, "ingress", true, "also roll out a gated app behind an Ingress whose load balancers podlb provisions")
	flag.BoolVar(&cfg.annotationsOnly, "annotations-only", false,
		"create the gated and ungated apps' load balancers in the sandbox and bind their Services with podlb's target-group / NEG annotations, instead of Services of type LoadBalancer that podlb provisions")
	flag.Parse()
	cfg.timing.drain = time.Second
	for _, c := range strings.Split(clouds, ",") {
		switch c = strings.TrimSpace(c); c {
		case "aws", "gcp":
			cfg.clouds = append(cfg.clouds, c)
		case "":
		default:
			fmt.Fprintf(os.Stderr, "podlb-sandbox: --clouds: unknown cloud %q (want aws, gcp)\n", c)
			os.Exit(1)
		}
	}
	if len(cfg.clouds) == 0 || cfg.replicas < 1 || cfg.timing.healthCheckInterval <= 0 || cfg.timing.registrationDelay < 0 {
		fmt.Fprintln(os.Stderr, "podlb-sandbox: need at least one cloud, one replica and a positive health check interval")
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first Ctrl-C tears down in order; a second one ends the sandbox
	// at once, and the kernel kills the children with it.
	go func() { <-ctx.Done(); stop() }()
	os.Exit(run(ctx, cfg))
}

// run returns the exit code once everything it started has stopped.
func run(ctx context.Context, cfg config) int {
	s := &sandbox{cfg: cfg, enabled: map[string]bool{}, began: time.Now()}
	for _, c := range cfg.clouds {
		s.enabled[c] = true
	}
	// Whatever happens, everything stops; a demo that completed tears
	// down with the cleanup check first, below.
	defer s.teardown(false)
	rep, err := s.demo(ctx)
	if errors.Is(err, context.Canceled) || (err != nil && ctx.Err() != nil) {
		fmt.Println("\ninterrupted")
		return 130
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "podlb-sandbox:", err)
		return 1
	}
	if cfg.keep {
		s.printKeep()
		<-ctx.Done()
		fmt.Println()
	}
	if !s.teardown(true) {
		return exitLeftovers
	}
	if !rep.Passed {
		fmt.Fprintln(os.Stderr, "podlb-sandbox: the gated app lost requests during its rollout; see the report above and the controller log", s.controller.LogPath)
		return exitGatedFailures
	}
	return 0
}

// sandbox is everything the demo starts, in the order it tears it down.
type sandbox struct {
	cfg     config
	enabled map[string]bool
	began   time.Time

	// binDir holds this binary and its siblings (podlb-controller,
	// kubectl-podlb).
	binDir     string
	cluster    *cluster.Cluster
	clouds     *clouds
	controller *childproc.Process
	metrics    string
	apps       []*app
}

func (s *sandbox) logf(format string, args ...any) {
	if s.cfg.verbose {
		fmt.Printf("  "+format+"\n", args...)
	}
}

func (s *sandbox) step(format string, args ...any) {
	fmt.Printf("%6.1fs  %s\n", time.Since(s.began).Seconds(), fmt.Sprintf(format, args...))
}

func (s *sandbox) demo(ctx context.Context) (*report, error) {
	t := s.cfg.timing
	fmt.Printf("podlb-sandbox %s: clouds %s, %d replicas; emulated clouds: NLB registration / NEG programming %v, then health checks every %v\n",
		version.Version, strings.Join(s.cfg.clouds, ","), s.cfg.replicas, t.registrationDelay, t.healthCheckInterval)
	var err error
	if s.binDir, err = siblingBinaries(); err != nil {
		return nil, err
	}

	opts := cluster.Options{Nodes: 3, Cloud: "gce"}
	if s.cfg.verbose {
		opts.Logf = s.logf
	}
	if s.cluster, err = cluster.Start(ctx, opts); err != nil {
		return nil, err
	}
	zones := make([]string, 0, len(s.cluster.Nodes))
	for _, n := range s.cluster.Nodes {
		zones = append(zones, n.Zone)
	}
	s.step("cluster up: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, %d simulated nodes in %s",
		len(s.cluster.Nodes), strings.Join(zones, ", "))

	if s.clouds, err = startClouds(ctx, s.cluster, s.enabled, s.cfg.timing); err != nil {
		return nil, err
	}
	for _, c := range s.cfg.clouds {
		s.step("%s emulator: %s", c, s.clouds.endpoints()[c])
	}

	if err := s.startController(ctx, filepath.Join(s.binDir, "podlb-controller")); err != nil {
		return nil, err
	}
	s.step("podlb-controller running (pid %d, log %s)", s.controller.Pid(), s.controller.LogPath)

	front := frontService
	if s.cfg.annotationsOnly {
		front = frontAnnotations
	}
	s.apps = []*app{{name: "gated", gated: true, frontend: front}, {name: "ungated", frontend: front}}
	if s.cfg.ingress {
		s.apps = append(s.apps, &app{name: "shop", gated: true, frontend: frontIngress})
	}
	if err := s.deploy(ctx); err != nil {
		return nil, err
	}
	s.step("waiting for the load balancers to serve every pod")
	if err := s.waitServed(ctx, 3*time.Minute); err != nil {
		return nil, err
	}
	s.step("all %d load balancers serve their %d pods", len(s.apps)*len(s.cfg.clouds), s.cfg.replicas)

	rep, err := s.rollout(ctx)
	if err != nil {
		return nil, err
	}
	rep.print(os.Stdout)
	if s.cfg.report != "" {
		if err := rep.write(s.cfg.report); err != nil {
			return nil, err
		}
		fmt.Printf("report written to %s\n", s.cfg.report)
	}
	return rep, nil
}

// siblingBinaries returns the directory of this binary after checking that
// podlb-controller is in it too (make build puts them together) and,
// unless the environment names them, points to the control-plane binaries
// in bin/k8s beside it, so the sandbox runs from any working directory.
func siblingBinaries() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	dir := filepath.Dir(exe)
	controller := filepath.Join(dir, "podlb-controller")
	if _, err := os.Stat(controller); err != nil {
		return "", fmt.Errorf("podlb-controller not found next to %s (run `make build`): %w", exe, err)
	}
	if os.Getenv(cluster.BinaryEnv) == "" {
		if _, err := os.Stat(filepath.Join(dir, "k8s", "kube-apiserver")); err == nil {
			_ = os.Setenv(cluster.BinaryEnv, filepath.Join(dir, "k8s"))
		}
	}
	return dir, nil
}

// startController runs podlb-controller as its own process with the flags
// a real deployment would use, pointed at the emulators.
func (s *sandbox) startController(ctx context.Context, binary string) error {
	_, err := s.cluster.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	metricsPort, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	probePort, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	s.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	args := []string{
		"--cluster-name=" + clusterName,
		"--providers=" + strings.Join(s.cfg.clouds, ","),
		"--kubeconfig=" + s.cluster.Kubeconfig,
		"--namespace=" + controllerNamespace,
		// Leader election as installed: the only replica takes the fresh
		// lease at once, and `kubectl podlb check` finds it leading.
		"--leader-elect=true",
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metricsPort),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(probePort),
		// Pending targets are polled this often; with emulated seconds
		// instead of minutes, the default second would dominate.
		"--health-poll-interval=500ms",
		"--coalesce-window=200ms",
	}
	var env []string
	if s.enabled["aws"] {
		url := s.clouds.aws.URL()
		args = append(args, "--aws-region="+emuclient.AWSRegion, "--aws-vpc-id="+sandboxVPC,
			"--aws-endpoint-elbv2="+url, "--aws-endpoint-ec2="+url)
		// The standard credential chain takes these first; the emulator
		// accepts any. No instance metadata lookups leave the machine.
		env = append(env, "AWS_ACCESS_KEY_ID=AKIDPODLBSANDBOX", "AWS_SECRET_ACCESS_KEY=sandbox", "AWS_EC2_METADATA_DISABLED=true")
	}
	if s.enabled["gcp"] {
		args = append(args, "--gcp-project="+s.cluster.GCEProject, "--gcp-endpoint="+s.clouds.gcp.URL())
	}
	s.logf("podlb-controller %s", strings.Join(args, " "))
	if s.controller, err = childproc.Start("podlb-controller", binary, s.cluster.Dir, env, args...); err != nil {
		return err
	}
	return s.waitHealthy(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", probePort))
}

func (s *sandbox) waitHealthy(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !s.controller.Running() {
			return s.controller.Failure("did not start")
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return s.controller.Failure("not healthy within a minute")
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// controllerDown reports a controller that died, so waits end with its log
// instead of a timeout.
func (s *sandbox) controllerDown() error {
	if s.controller.Running() {
		return nil
	}
	return s.controller.Failure("exited")
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// deploy creates, per app, the Service and the Deployment, and waits
// for their load balancers: podlb's for a Service of type LoadBalancer
// and an Ingress; with annotations only, the sandbox's own, the GCP one
// before the Service (podlb adds NEGs to its backend service), the AWS one
// after it, in front of the target group podlb created.
func (s *sandbox) deploy(ctx context.Context) error {
	for _, a := range s.apps {
		a.lbs = map[string]*loadBalancer{}
		if s.enabled["gcp"] && a.frontend == frontAnnotations {
			addr, err := s.clouds.gcpLoadBalancer(ctx, a.lbName(), s.cfg.timing.drain)
			if err != nil {
				return fmt.Errorf("gcp load balancer for %s: %w", a.name, err)
			}
			a.lbs["gcp"] = &loadBalancer{cloud: "gcp", group: a.lbName(), name: a.lbName(), addr: addr}
		}
		svc, err := a.service(s.enabled, s.cfg.timing)
		if err != nil {
			return err
		}
		if _, err := s.cluster.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := s.cluster.Client.AppsV1().Deployments(namespace).Create(ctx, a.deployment(int32(s.cfg.replicas), s.cfg.timing), metav1.CreateOptions{}); err != nil {
			return err
		}
		how := "without a readiness gate"
		if a.gated {
			how = "with readiness gate " + gate
		}
		s.step("Deployment %s: %d replicas, maxSurge 1, maxUnavailable 0, preStop %v, %s", a.name, s.cfg.replicas, s.cfg.timing.preStop(), how)
	}
	for _, a := range s.apps {
		if a.frontend != frontIngress {
			continue
		}
		if err := s.createIngress(ctx, a); err != nil {
			return fmt.Errorf("Ingress for %s: %w", a.name, err)
		}
	}
	// podlb provisions the load balancers of every app at once; they are
	// collected in order.
	for _, a := range s.apps {
		switch a.frontend {
		case frontIngress:
			lbs, err := s.ingressLoadBalancers(ctx, a)
			if err != nil {
				return err
			}
			a.lbs = lbs
			for _, c := range sortedKeys(lbs) {
				s.step("%s: podlb provisioned Application Load Balancer %s for Ingress %s, listening on %s", c, lbs[c].name, a.lbName(), lbs[c].addr)
			}
		case frontService:
			lbs, err := s.serviceLoadBalancers(ctx, a)
			if err != nil {
				return err
			}
			a.lbs = lbs
			for _, c := range sortedKeys(lbs) {
				s.step("%s: podlb provisioned %s %s for Service %s of type LoadBalancer at %s, served on %s",
					c, map[string]string{"aws": "Network Load Balancer", "gcp": "TCP proxy load balancer"}[c], lbs[c].name, a.name, lbs[c].published, lbs[c].addr)
			}
		}
	}
	for _, a := range s.apps {
		if !s.enabled["aws"] || a.frontend != frontAnnotations {
			continue
		}
		arn, err := awsTargetGroup(ctx, s.cluster, a.name, s.controllerDown)
		if err != nil {
			return err
		}
		_, addr, err := s.clouds.awsLoadBalancer(ctx, a.lbName(), arn)
		if err != nil {
			return fmt.Errorf("aws load balancer for %s: %w", a.name, err)
		}
		a.lbs["aws"] = &loadBalancer{cloud: "aws", group: arn, name: a.lbName(), addr: addr}
		s.step("aws: podlb created target group %s; the sandbox's NLB %s listens on %s", shortARN(arn), a.lbName(), addr)
	}
	for _, a := range s.apps {
		if lb := a.lbs["gcp"]; lb != nil && a.frontend == frontAnnotations {
			s.step("gcp: the sandbox's TCP proxy load balancer %s listens on %s (podlb attaches its NEGs to backend service %s)", lb.name, lb.addr, lb.group)
		}
	}
	return nil
}

// shortARN keeps the resource part of an ARN, which is what identifies it
// to a reader.
func shortARN(arn string) string {
	if i := strings.Index(arn, ":targetgroup/"); i >= 0 {
		return arn[i+1:]
	}
	return arn
}

// waitServed waits until every load balancer serves all pods of its app.
func (s *sandbox) waitServed(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pending := ""
		for _, a := range s.apps {
			v, err := a.observe(ctx, s.cluster, s.clouds)
			if err != nil {
				return err
			}
			if !v.served(a.gated, s.cfg.replicas) {
				pending = fmt.Sprintf("%s: %d live pods, %d gates True, load balancers %s", a.name, v.Live, v.GateTrue, groupSummary(v))
				break
			}
		}
		if pending == "" {
			return nil
		}
		if err := s.controllerDown(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the load balancers did not serve every pod within %v: %s (controller log: %s)", timeout, pending, s.controller.LogPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func groupSummary(v appView) string {
	var parts []string
	for _, c := range sortedKeys(v.groups) {
		g := v.groups[c]
		parts = append(parts, fmt.Sprintf("%s %d registered/%d healthy", c, g.Registered, g.Healthy))
	}
	return strings.Join(parts, ", ")
}

// rollout drives traffic through every load balancer, restarts both
// Deployments at once and follows them until each app's load balancers
// serve only new pods; then it stops that app's traffic.
func (s *sandbox) rollout(ctx context.Context) (*report, error) {
	for _, a := range s.apps {
		for _, c := range sortedKeys(a.lbs) {
			lb := a.lbs[c]
			lb.load = loadgen.Start(lb.addr, loadWorkers, loadInterval)
		}
	}
	defer s.stopLoads()
	s.step("steady traffic through all %d load balancers: %d requests/s each, one connection per request",
		len(s.apps)*len(s.cfg.clouds), int(float64(loadWorkers)*float64(time.Second)/float64(loadInterval)))
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Second): // a baseline before the rollouts
	}

	callsBefore := s.clouds.apiCalls()
	for _, a := range s.apps {
		if err := a.trigger(ctx, s.cluster); err != nil {
			return nil, err
		}
	}
	s.step("rolling update of all %d Deployments started (kubectl rollout restart)", len(s.apps))
	started := time.Now()
	live := newDisplay(os.Stdout, s.cfg.clouds)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		views := map[string]appView{}
		done := true
		for _, a := range s.apps {
			v, err := a.observe(ctx, s.cluster, s.clouds)
			if err != nil {
				return nil, err
			}
			views[a.name] = v
			now := time.Now()
			if a.rolledOut.IsZero() && v.Complete && v.Old == 0 {
				a.rolledOut = now
			}
			if a.settled.IsZero() && !a.rolledOut.IsZero() && v.New == s.cfg.replicas && v.served(a.gated, s.cfg.replicas) {
				a.settled = now
			}
			if !a.settled.IsZero() && now.Sub(a.settled) >= settleTime {
				a.stopLoad()
			} else {
				done = false
			}
		}
		live.update(time.Since(started), s.apps, views)
		if done {
			live.finish()
			break
		}
		if err := s.controllerDown(); err != nil {
			return nil, err
		}
		if time.Since(started) > rolloutTimeout {
			live.finish()
			return nil, fmt.Errorf("the rollouts did not settle within %v (controller log: %s)", rolloutTimeout, s.controller.LogPath)
		}
		select {
		case <-ctx.Done():
			live.finish()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	return s.newReport(callsSince(s.clouds.apiCalls(), callsBefore)), nil
}

func (a *app) stopLoad() {
	for _, lb := range a.lbs {
		if lb.load != nil && lb.final == nil {
			r := lb.load.Stop()
			lb.final = &r
		}
	}
}

func (s *sandbox) stopLoads() {
	for _, a := range s.apps {
		a.stopLoad()
	}
}

// printKeep tells the user how to reach what keeps running.
func (s *sandbox) printKeep() {
	k := s.cluster.Kubeconfig
	fmt.Printf("\nkubeconfig:          %s\n", k)
	fmt.Printf("podlb-controller:    pid %d, log %s, metrics %s\n", s.controller.Pid(), s.controller.LogPath, s.metrics)
	for _, c := range s.cfg.clouds {
		fmt.Printf("%s emulator API:    %s (counters at /_sim/stats)\n", c, s.clouds.endpoints()[c])
	}
	for _, a := range s.apps {
		for _, c := range sortedKeys(a.lbs) {
			fmt.Printf("load balancer:       %-7s %s  http://%s/\n", a.name, c, a.lbs[c].addr)
		}
	}
	fmt.Printf("\nTry:\n")
	fmt.Printf("  export KUBECONFIG=%s\n", k)
	fmt.Printf("  kubectl get pods -o wide\n")
	if s.apps[0].frontend == frontService {
		fmt.Printf("  kubectl get services    # EXTERNAL-IP: the addresses podlb wrote to status.loadBalancer.ingress\n")
	}
	fmt.Printf("  kubectl get pods -o custom-columns='POD:.metadata.name,GATE:.status.conditions[?(@.type==\"%s\")].status'\n", gate)
	fmt.Printf("  kubectl get service gated -o jsonpath='{.metadata.annotations.podlb\\.io/status}'; echo\n")
	fmt.Printf("  kubectl rollout restart deployment/gated && kubectl rollout status deployment/gated\n")
	fmt.Printf("  kubectl scale deployment/gated --replicas=%d\n", s.cfg.replicas+2)
	if lb := s.apps[0].lbs[s.cfg.clouds[0]]; lb != nil {
		fmt.Printf("  curl http://%s/\n", lb.addr)
	}
	for _, c := range s.cfg.clouds {
		fmt.Printf("  curl %s/_sim/stats\n", s.clouds.endpoints()[c])
	}
	if s.enabled["gcp"] {
		fmt.Printf("  curl %s/_sim/health\n", s.clouds.gcp.URL())
	}
	fmt.Printf("  kubectl get events --field-selector involvedObject.kind=Service\n")
	if _, err := os.Stat(filepath.Join(s.binDir, "kubectl-podlb")); err == nil {
		fmt.Printf("\nkubectl podlb, the plugin beside this binary:\n")
		fmt.Printf("  export PATH=%s:$PATH\n", s.binDir)
		fmt.Printf("  kubectl podlb status svc/gated\n")
		fmt.Printf("  kubectl podlb explain pod/$(kubectl get pods -l app=gated -o jsonpath='{.items[0].metadata.name}')\n")
		fmt.Printf("  kubectl podlb check    # names the ungated app's pods: they lack the gate\n")
	}
	// Last, so whoever waits for this line has every hint above it.
	fmt.Printf("\nEverything keeps running until Ctrl-C.\n")
}

// teardown stops everything in reverse order of start, once; every step
// is safe when its part never started. With cleanup, and a demo that got as far
// as its load balancers, podlb first deletes those it provisioned, and
// teardown reports false when podlb did not or left some behind.
func (s *sandbox) teardown(cleanup bool) bool {
	if s.cluster == nil {
		return true
	}
	s.stopLoads()
	clean := true
	if cleanup && s.controller != nil && s.controller.Running() {
		deleted, left, err := s.release(context.Background())
		switch {
		case err != nil:
			fmt.Fprintln(os.Stderr, "podlb-sandbox: cleaning up:", err)
			clean = false
		case len(left) > 0:
			clean = false
		}
		printRelease(deleted, left)
	}
	fmt.Println("stopping podlb-controller, the emulators and the cluster")
	s.controller.Stop(10 * time.Second)
	if s.clouds != nil {
		s.clouds.close()
	}
	s.cluster.Stop()
	s.cluster = nil
	return clean
}
