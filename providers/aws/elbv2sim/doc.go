// Package elbv2sim emulates the parts of AWS Elastic Load Balancing v2 (and
// EC2 DescribeVpcs, DescribeSubnets and DescribeSecurityGroups) that a
// controller registering pod IPs needs, closely enough that the unmodified
// aws-sdk-go-v2 clients talk to it: the AWS Query wire protocol, target
// groups, targets with AWS's health state machine driven by real health
// checks, network load balancers whose TCP, TLS, UDP and TCP_UDP listeners
// forward real connections and datagrams to healthy targets, application load
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
// Tests read the emulator's own view too: Targets (states, when each was
// registered and first healthy), Calls (the journal of calls answered),
// CheckTiming (the health checks as the emulator runs them) and, with
// Options.ConnectionHistory, Connection (which target a client's
// connection through a TCP or TLS listener went to, and why it got no
// answer).
//
// Counters are also served as JSON at GET /_sim/stats on the API address
// (DELETE resets them). A call of an action the emulator does not
// implement answers 400 InvalidAction and is counted under its action name
// (field "unimplemented"), so a gap cannot hide.
//
// The emulator only ever connects to addresses in 127.0.0.0/8. Targets
// elsewhere (for instance in 10.0.0.0/16) can be registered but always fail
// their health checks with Target.Timeout and never receive traffic.
//
// Documented AWS rules the emulator enforces (each cites its page where it
// is implemented):
//
//   - Resource IDs have AWS's shape: vpc-, subnet-, sg- and 8 or 17
//     lowercase hex digits, for the options (Start fails) and on input. EC2
//     answers a malformed ID InvalidVpcID.Malformed,
//     InvalidSubnetID.Malformed or InvalidGroupId.Malformed; ELBv2 answers
//     ValidationError (a malformed VpcId or subnet ID).
//   - Subnets have a CIDR inside their VPC's CIDRs. An ip target in a
//     subnet of the group's VPC has its zone detected: AvailabilityZone may
//     be left out or name that subnet's zone. An IP outside the VPC needs
//     AvailabilityZone ("all" or a zone of the VPC), and must be in RFC
//     1918 or RFC 6598 space (publicly routable IPs answer InvalidTarget);
//     127.0.0.0/8 is accepted too, for tests. "all" is refused for IPs
//     inside the VPC (ValidationError).
//   - Network load balancer quotas: 500 targets per zone and 3000 per load
//     balancer (500 in all with cross-zone load balancing on), a target
//     registered in N groups of the load balancer counting N times
//     (TooManyTargets); Options change the numbers.
//   - A target in a zone none of the group's load balancers has enabled is
//     unused / Target.NotInUse, is not checked and gets no traffic.
//   - target_health_state.unhealthy.connection_termination.enabled (true
//     by default) resets a network target's connections when it turns
//     unhealthy; false with
//     target_health_state.unhealthy.draining_interval_seconds keeps them
//     for that interval, reported as unhealthy.draining, without new ones.
//   - Throttled calls answer Throttling (ELBv2, HTTP 400) or
//     RequestLimitExceeded (EC2); the SDK retries both as throttling.
//   - Load balancers of both types start in state provisioning and turn
//     active after Options.ProvisioningDelay; until then no listener
//     serves.
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
//     InvalidTarget. An IP inside the VPC's CIDRs but in no subnet needs an
//     AvailabilityZone of the VPC. Instance targets are all in the VPC's
//     first zone.
//   - TooManyRegistrationsForTargetId: one IP registered more than 100
//     times across the groups of one load balancer (the application load
//     balancer quota, applied to network load balancers too).
//   - Quotas are checked by RegisterTargets only, not when a listener
//     starts forwarding to a full group. With zone "all" a target counts
//     in every zone of the load balancer.
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
//   - Network load balancer listeners have only their default rule: one
//     forward action to one target group. TCP listeners forward TCP
//     connections; TLS listeners terminate TLS with the emulator's
//     certificates (exactly one default certificate, SNI among those
//     AddListenerCertificates adds) and forward plain TCP whatever the
//     group's protocol; UDP listeners forward datagrams and take no TCP;
//     TCP_UDP listeners do both. A listener port is unique per load
//     balancer whatever the protocol (DuplicateListener), as TCP_UDP
//     exists for serving both on one port.
//   - UDP: the first datagram of a client address:port picks a target
//     like a new connection; the flow keeps it while the target is
//     registered (draining included) and the flow is not idle for 120 s
//     (AWS's UDP idle timeout). Replies come back from the listener's
//     address. A flow whose target left picks again.
//   - While provisioning, application load balancer listeners answer
//     every request 503 and network listeners close connections and drop
//     datagrams.
//   - unavailable is never reported: ip groups cannot disable health
//     checks (Target.HealthCheckDisabled) and the emulator has no
//     internal errors (Elb.InternalError).
//   - Without Subnets a load balancer goes into one subnet per zone of the
//     first VPC. Only the VPC's subnets are accepted (SubnetNotFound).
//     SecurityGroups must be groups of the load balancer's VPC
//     (InvalidSecurityGroup).
//   - RegistrationDelay: AWS takes from about 30 seconds to a few minutes
//     to register a target with a network load balancer before health
//     checks start; the emulator's default is zero (health checks start at
//     once), for every group type, so tests stay fast.
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
//   - With Options.Policies, a caller's calls are evaluated against its
//     IAM policy (authorize.go, policy.go): Allow and Deny statements,
//     Action/NotAction and Resource/NotResource with wildcards, the ARNs
//     each action is authorised on, string and Null conditions on
//     aws:ResourceTag, aws:RequestTag, aws:TagKeys and
//     elasticloadbalancing:CreateAction (a create with Tags is an AddTags
//     too). A refusal answers 403 AccessDenied (EC2:
//     UnauthorizedOperation) naming the action and resource.
package elbv2sim
