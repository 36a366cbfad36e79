// Command kube-scheduler is the upstream kube-scheduler, built from module source so that
// tests run against a real control plane without downloading binaries.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
