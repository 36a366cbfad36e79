// Package elbv2sim emulates the parts of AWS Elastic Load Balancing v2 (and
// EC2 DescribeVpcs) that a controller registering pod IPs needs, closely
// enough that the unmodified aws-sdk-go-v2 clients talk to it: the AWS Query
// wire protocol, target groups, targets with AWS's health state machine
// driven by real health checks, network load balancers whose listeners
// forward real TCP connections to healthy targets, application load
// balancers whose HTTP and HTTPS listeners route real HTTP requests by
// rules (host-header, path-pattern, http-header; forward, fixed-response,
// redirect) with certificates the emulator issues (IssueCertificate,
// CertificatePool), and API throttling and faults.
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
//   - Network load balancer listeners forward TCP connections (TLS
//     listeners do not terminate TLS; UDP is not forwarded), and have only
//     their default rule: one forward action to one target group.
//   - Application load balancers start in state provisioning and turn
//     active after Options.ProvisioningDelay (AWS takes minutes); until
//     then their listeners answer every request 503. Network load
//     balancers are active at once.
//   - Without Subnets a load balancer goes into the first VPC's subnets. A
//     VPC that declares Subnets accepts only those (SubnetNotFound); one
//     that declares none accepts any subnet ID. SecurityGroups are only
//     checked to start with "sg-".
//   - idle_timeout.timeout_seconds is validated (1-4000) and reported but
//     does not close idle client connections; deletion_protection.enabled
//     makes DeleteLoadBalancer answer OperationNotPermitted.
//   - A rule (and a default rule) has exactly one action: forward,
//     fixed-response or redirect; authenticate actions are not emulated.
//     Conditions are host-header, path-pattern and http-header only.
//   - Quotas: 100 rules per application load balancer (TooManyRules), 5
//     condition values and 5 wildcards per rule (ValidationError), 5
//     target groups per forward action (TooManyTargetGroups), 100 target
//     groups per load balancer (TooManyUniqueTargetGroupsPerLoadBalancer).
//     CreateRule on a network load balancer listener answers
//     InvalidConfigurationRequest; a redirect that changes nothing
//     InvalidLoadBalancerAction.
//   - host-header conditions ignore a port in the Host header; * and ?
//     match any characters including dots. http-header values compare
//     case-insensitively, path patterns case-sensitively.
//   - A forward action with several groups sends requests by weighted
//     round robin (weights 1 and 3: one request in four to the first), not
//     at random. Within a group requests go round robin with the
//     fail-open rule above; no usable target answers 503, a target that
//     refuses the connection 502, one that times out 504.
//   - Every proxied request opens its own connection to the target (no
//     keep-alive), so "in flight" means requests. As AWS documents for
//     application load balancers, a deregistered target with no request
//     in flight leaves at once; otherwise it drains until its last request
//     is answered or the deregistration delay ends, whichever is first.
//     Requests still in flight when the delay ends are not cut off.
//   - HTTPS listeners take exactly one certificate in CreateListener and
//     ModifyListener (the default); AddListenerCertificates adds more, and
//     SNI picks the first whose names cover the requested host. SslPolicy
//     sets only the lowest TLS version. Targets' certificates are never
//     verified. Listeners speak HTTP/1.1 only.
//   - A target group may be used by any number of rules and listeners of
//     one load balancer, never by two load balancers
//     (TargetGroupAssociationLimit); a group any rule forwards to is in use
//     and health-checked.
package elbv2sim
