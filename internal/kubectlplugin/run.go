package kubectlplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podlb/podlb/internal/version"
)

const usage = `kubectl podlb shows what podlb does with your Services and pods, and why.

Usage:
  kubectl podlb status [svc|service]/NAME    groups, targets, errors and Warnings of an annotated Service;
                                             for a Service of type LoadBalancer of class podlb.io/load-balancer
                                             also its address, listeners, refused ports and problems
  kubectl podlb explain pod/NAME             why a pod's readiness gate is what it is
  kubectl podlb check [-n NS | -A]           preflight: gates, termination vs drain, stuck finalizers,
                                             the controller's permissions and leader
  kubectl podlb version

Flags of check:
  -A, --all-namespaces          check every namespace
      --controller-namespace    podlb's namespace (default podlb-system)
      --lease-name              podlb's leader lease (default podlb-controller-leader)

kubectl's connection flags apply: --kubeconfig, --context, -n/--namespace, KUBECONFIG, ...
`

// ChecksFailed is the error of a check that found problems; they are in
// the output already.
type ChecksFailed struct{ Problems int }

func (e ChecksFailed) Error() string {
	return fmt.Sprintf("%d problem%s found", e.Problems, plural(e.Problems))
}

// env is what every command works with.
type env struct {
	client    kubernetes.Interface
	config    *rest.Config
	namespace string
	out       io.Writer
	now       time.Time
}

// Run runs one kubectl podlb command. args are the command line without
// the program name.
func Run(ctx context.Context, args []string, streams genericiooptions.IOStreams) error {
	fs := pflag.NewFlagSet("kubectl podlb", pflag.ContinueOnError)
	fs.SetOutput(streams.ErrOut)
	fs.Usage = func() { fmt.Fprint(streams.ErrOut, usage) }
	kube := genericclioptions.NewConfigFlags(true)
	kube.AddFlags(fs)
	var co checkOptions
	fs.BoolVarP(&co.allNamespaces, "all-namespaces", "A", false, "check: every namespace")
	fs.StringVar(&co.controllerNamespace, "controller-namespace", "podlb-system", "check: podlb's namespace")
	fs.StringVar(&co.leaseName, "lease-name", "podlb-controller-leader", "check: podlb's leader lease")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	positional := fs.Args()
	if len(positional) == 0 {
		fmt.Fprint(streams.ErrOut, usage)
		return errors.New("missing command: status, explain, check or version")
	}
	cmd, operands := positional[0], positional[1:]
	if cmd == "version" {
		fmt.Fprintln(streams.Out, "kubectl-podlb", version.Version)
		return nil
	}
	if cmd == "help" {
		fmt.Fprint(streams.Out, usage)
		return nil
	}
	e, err := newEnv(kube, streams.Out)
	if err != nil {
		return err
	}
	switch cmd {
	case "status":
		if len(operands) != 1 {
			return errors.New("status takes one object, e.g. svc/web")
		}
		return e.status(ctx, operands[0])
	case "explain":
		if len(operands) != 1 {
			return errors.New("explain takes one pod, e.g. pod/web-7d9c-abcde")
		}
		return e.explain(ctx, operands[0])
	case "check":
		if len(operands) != 0 {
			return fmt.Errorf("check takes no arguments, got %q", strings.Join(operands, " "))
		}
		return e.check(ctx, co)
	}
	return fmt.Errorf("unknown command %q (want status, explain, check or version)", cmd)
}

func newEnv(kube *genericclioptions.ConfigFlags, out io.Writer) (*env, error) {
	cfg, err := kube.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &env{client: client, config: cfg, namespace: ns, out: out, now: time.Now()}, nil
}

// splitObject splits KIND/NAME; a bare NAME is of defaultKind.
func splitObject(arg, defaultKind string) (kind, name string, err error) {
	kind, name, found := strings.Cut(arg, "/")
	if !found {
		kind, name = defaultKind, arg
	}
	if name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%q: want KIND/NAME", arg)
	}
	return strings.ToLower(kind), name, nil
}
