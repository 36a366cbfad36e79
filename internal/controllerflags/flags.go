// Package controllerflags is podlb-controller's command line: the flag
// set is built here, apart from the command, so the guide's flag
// reference can be generated from it.
package controllerflags

import (
	"flag"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/targets"
)

// Values receive the parsed flags.
type Values struct {
	ShowVersion, LeaderElect, GateIgnoresUnservedClouds, Profiling     bool
	Kubeconfig, Cluster, Providers, Namespace, LeaderElectionID        string
	MetricsAddr, ProbeAddr                                             string
	Workers, WriteSlots, HealthReaders, KubeAPIBurst                   int
	KubeAPIQPS                                                         float64
	Poll, Resync, Coalesce, MaxBackoff, SweepInterval                  time.Duration
	DeregistrationHeadStart                                            time.Duration
	AWSRegion, AWSVPC, AWSEndpointELBv2, AWSEndpointEC2, AWSRateLimits string
	AWSBatchSize, AWSMaxAttempts                                       int
	GCPProject, GCPNetwork, GCPSubnetwork, GCPEndpoint, GCPRateLimits  string
	GCPAccessTokenFile                                                 string
	GCPBatchSize                                                       int
	Zap                                                                zap.Options
}

// New builds the flag set. getenv supplies the defaults some flags take
// from the environment (os.Getenv; the guide's reference passes one that
// finds nothing, so it shows the built-in defaults).
func New(getenv func(string) string) (*flag.FlagSet, *Values) {
	fs := flag.NewFlagSet("podlb-controller", flag.ContinueOnError)
	v := &Values{}
	fs.BoolVar(&v.ShowVersion, "version", false, "print the version and exit")
	fs.StringVar(&v.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty uses the in-cluster configuration")
	fs.StringVar(&v.Cluster, "cluster-name", "", "name of this cluster, recorded on every cloud resource podlb creates (required)")
	fs.StringVar(&v.Providers, "providers", "", "clouds to serve, comma separated (aws, gcp); default: every cloud with its settings given")
	fs.StringVar(&v.Namespace, "namespace", or(getenv("POD_NAMESPACE"), "podlb-system"), "podlb's own namespace: leader lease and ownership ledger; $POD_NAMESPACE overrides the default")
	fs.BoolVar(&v.LeaderElect, "leader-elect", true, "wait for the leader lease before acting, so only one replica writes")
	fs.StringVar(&v.LeaderElectionID, "leader-election-id", "podlb-controller-leader", "name of the leader lease")
	fs.StringVar(&v.MetricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint ("0" disables)`)
	fs.StringVar(&v.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&v.Profiling, "profiling", false, "serve Go's runtime profiles (heap, CPU, goroutines) under /debug/pprof/ on the metrics address")
	fs.Float64Var(&v.KubeAPIQPS, "kube-api-qps", 100, "Kubernetes API requests per second of each of the controller's clients: its cache and Service status, its ownership ledger, and gate writes (False gates have a smaller budget of their own)")
	fs.IntVar(&v.KubeAPIBurst, "kube-api-burst", 200, "Kubernetes API requests each of those clients may make at once")
	fs.IntVar(&v.Workers, "workers", 32, "bindings reconciled in parallel; those with writes wait, most waited-for first, for one of the cloud's write slots")
	fs.IntVar(&v.WriteSlots, "write-slots", 4, "target-write passes in flight per cloud; under load, bindings queue for them by how long their pods have waited")
	fs.DurationVar(&v.DeregistrationHeadStart, "deregistration-head-start", targets.DefaultHeadStart, "how much longer than it has waited a deregistration counts when bindings queue for a write slot, until its pod has been killed for the load balancer's unhealthy threshold x check interval: a terminating pod still registered is sent new connections, while a registration only slows the rollout the gate holds; a slot won ahead of an older change by the head start owes the next to it, so neither direction starves; 0 ranks them alike")
	fs.IntVar(&v.HealthReaders, "health-readers", 4, "health reads in flight; due reads go out by how long their pods have waited, background reads last")
	fs.DurationVar(&v.Poll, "health-poll-interval", time.Second, "health polling interval while a target waits for the load balancer")
	fs.DurationVar(&v.Resync, "resync-period", 10*time.Minute, "how often every binding is compared with the cloud to repair drift")
	fs.DurationVar(&v.Coalesce, "coalesce-window", 200*time.Millisecond, "after a binding's write, how long further changes of the same kind (and, on GCP, zone) gather before its next such write (a lone change goes out at once)")
	fs.DurationVar(&v.MaxBackoff, "max-backoff", 2*time.Minute, "longest retry delay of a failing binding")
	fs.BoolVar(&v.GateIgnoresUnservedClouds, "gate-ignores-unserved-clouds", false, "let pods through that a Service binds only on clouds this controller does not serve (another controller serves them); by default their gate stays False with reason CloudNotServed")
	fs.DurationVar(&v.SweepInterval, "sweep-interval", 10*time.Minute, "how often groups and ledger entries no Service asks for any more are looked for and released (the first time once the start has settled)")

	fs.StringVar(&v.AWSRegion, "aws-region", getenv("AWS_REGION"), "AWS region; $AWS_REGION sets the default")
	fs.StringVar(&v.AWSVPC, "aws-vpc-id", "", "the cluster's VPC: target groups elsewhere are rejected; needed to create groups")
	fs.StringVar(&v.AWSEndpointELBv2, "aws-endpoint-elbv2", "", "ELBv2 endpoint URL override")
	fs.StringVar(&v.AWSEndpointEC2, "aws-endpoint-ec2", "", "EC2 endpoint URL override")
	fs.IntVar(&v.AWSBatchSize, "aws-batch-size", 200, "most targets per RegisterTargets/DeregisterTargets call")
	fs.IntVar(&v.AWSMaxAttempts, "aws-max-attempts", 5, "attempts per call, with backoff, on throttling (each with a token of the operation's client-side bucket) and 5xx")
	fs.StringVar(&v.AWSRateLimits, "aws-rate-limits", "", "client-side token buckets, Operation=qps:burst,... over the defaults: "+providers.FormatLimits(awsprovider.DefaultLimits()))

	fs.StringVar(&v.GCPProject, "gcp-project", "", "GCP project of the NEGs (and of backend services named without one)")
	fs.StringVar(&v.GCPNetwork, "gcp-network", "", "VPC network of the NEGs; empty uses the project's default network")
	fs.StringVar(&v.GCPSubnetwork, "gcp-subnetwork", "", "subnetwork of the NEGs")
	fs.StringVar(&v.GCPEndpoint, "gcp-endpoint", "", "Compute API endpoint URL override: an https:// URL (a Private Service Connect endpoint) uses the usual credentials, an http:// URL (an emulator) sends none unless --gcp-access-token-file is given")
	fs.StringVar(&v.GCPAccessTokenFile, "gcp-access-token-file", "", "file holding an OAuth2 access token, sent instead of Application Default Credentials; a new token written there is used within seconds, so a sidecar or token broker can rotate it")
	fs.IntVar(&v.GCPBatchSize, "gcp-batch-size", 500, "most endpoints per attachNetworkEndpoints/detachNetworkEndpoints call (at most 500)")
	fs.StringVar(&v.GCPRateLimits, "gcp-rate-limits", "", "client-side token buckets, method=qps:burst,... over the defaults: "+providers.FormatLimits(gcpprovider.DefaultLimits()))

	v.Zap.BindFlags(fs)
	return fs, v
}

func or(v, def string) string {
	if v != "" {
		return v
	}
	return def
}
