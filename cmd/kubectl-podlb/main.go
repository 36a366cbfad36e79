// Command kubectl-podlb is the kubectl plugin `kubectl podlb`: put it on
// PATH and run `kubectl podlb status svc/NAME`, `kubectl podlb explain
// pod/NAME` or `kubectl podlb check`. See internal/kubectlplugin.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podlb/podlb/internal/kubectlplugin"
)

func main() {
	if err := run(); err != nil {
		var failed kubectlplugin.ChecksFailed
		if !errors.As(err, &failed) {
			// Findings are already in the output; anything else is not.
			fmt.Fprintln(os.Stderr, "kubectl podlb:", err)
		}
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return kubectlplugin.Run(ctx, os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
}
