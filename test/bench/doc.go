// Package bench holds podlb's scale benchmarks. They start a local control
// plane (test/cluster), the cloud emulators in this process and the real
// bin/podlb-controller as a separate process, drive rollouts, scale-ups,
// churn and an idle steady state, and print a table of figures: per-pod
// latencies against the emulator's own floor, cloud calls against a lower
// bound, throttles, controller memory and CPU from /proc, and reconcile
// queue depth and latency from the controller's metrics.
//
// Run them with `make bench`, or directly:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 120m ./test/bench -args -bench.clouds=aws
//
// Every size and timing is a flag (see -args -help) or the environment
// variable named in its usage. Benchmarks report; they never fail on
// wall-clock figures, only when the system does not converge at all.
package bench
