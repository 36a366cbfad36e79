// Package emuclient points the clouds' own SDK clients at podlb's emulators
// (providers/aws/elbv2sim, providers/gcp/computesim) and builds what a user
// would have built before annotating a Service: target groups and network
// load balancers on AWS, health checks, backend services and TCP proxy
// load balancers on GCP. The sandbox, the benchmarks and the end-to-end
// tests set up their clouds with it.
package emuclient
