// Command kube-apiserver is the upstream kube-apiserver, built from module source so that
// tests run against a real control plane without downloading binaries.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
