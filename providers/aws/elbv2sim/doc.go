// Package elbv2sim emulates the parts of AWS Elastic Load Balancing v2 (and
// EC2 DescribeVpcs) that a controller registering pod IPs needs, closely
// enough that the unmodified aws-sdk-go-v2 clients talk to it: the AWS Query
// wire protocol, target groups, targets with AWS's health state machine
// driven by real health checks, load balancers whose listeners forward real
// TCP connections to healthy targets, and API throttling and faults.
//
// Use it like httptest:
//
//	srv, err := elbv2sim.Start(elbv2sim.Options{RegistrationDelay: 100 * time.Millisecond})
//	defer srv.Close()
//	client := elbv2.New(elbv2.Options{Region: "us-east-1",
//		BaseEndpoint: aws.String(srv.URL()),
//		Credentials:  credentials.NewStaticCredentialsProvider("a", "b", "")})
//
// Counters are also served as JSON at GET /_sim/stats on the API address
// (DELETE resets them).
//
// The emulator only ever connects to addresses in 127.0.0.0/8. Targets
// elsewhere (for instance in 10.0.0.0/16) can be registered but always fail
// their health checks with Target.Timeout and never receive traffic.
//
// Where AWS's behaviour is not documented, the emulator chooses:
//
//   - CreateTargetGroup with the name and settings of an existing group
//     returns that group; different settings give DuplicateTargetGroupName.
//     CreateLoadBalancer behaves the same way.
//   - DeleteTargetGroup and DeleteLoadBalancer of an ARN that does not exist
//     succeed; DeleteListener answers ListenerNotFound.
//   - RegisterTargets is all-or-nothing. Registering a registered target is
//     a no-op; registering a draining target cancels the deregistration and
//     starts it again from initial/Elb.RegistrationInProgress.
//   - Target groups are ipv4 only. In an ip group an IPv6 target answers
//     ValidationError, as AWS does, and a target Id that is no IP address
//     InvalidTarget. TooManyRegistrationsForTargetId is never answered.
//   - Draining targets count against MaxTargetsPerGroup until they are gone.
//   - In a group no listener uses, a deregistered target goes at once (there
//     is nothing to drain), and registered targets report unused /
//     Target.NotInUse without being checked. When a listener starts
//     forwarding to the group they start again from initial.
//   - When the deregistration delay ends, the target's open connections are
//     closed, whatever deregistration_delay.connection_termination.enabled
//     says.
//   - Fail-open: with no healthy target but at least one unhealthy, new
//     connections go round-robin to every target past registration
//     (unhealthy or in initial health checks). A group whose targets are all
//     initial or draining closes new connections at once.
//   - Listeners of both load balancer types forward TCP connections; an
//     application load balancer does not proxy individual HTTP requests,
//     and TLS/HTTPS listeners do not terminate TLS. UDP is not forwarded.
//   - Each listener has a single default forward action to one target
//     group, and a target group may be used by one load balancer.
//     DescribeRules answers that default action as the listener's only
//     rule (IsDefault, priority "default").
package elbv2sim
