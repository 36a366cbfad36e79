// Package targets is podlb's cloud-agnostic core: it turns Service
// annotations into bindings, computes each binding's desired targets from
// EndpointSlices and Pods, diffs them against what the cloud reports and
// hands the resulting plan to a provider.
package targets

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podlb/podlb/providers"
)

const (
	// AnnotationReadiness selects when the gate turns True: "healthy"
	// (default) or "registered".
	AnnotationReadiness = "podlb.io/readiness"
	// AnnotationStatus is written by podlb: per binding, the group and its
	// target counts, and every problem found.
	AnnotationStatus = "podlb.io/status"
	// Finalizer holds a Service until its targets are deregistered and the
	// groups podlb created for it are deleted.
	Finalizer = "podlb.io/cleanup"
	// GateConditionType is the pod condition users list in readinessGates.
	GateConditionType corev1.PodConditionType = "podlb.io/load-balancer-ready"
)

// Problem is a user error found in a Service's annotations.
type Problem struct {
	// Field names what to fix, e.g. podlb.io/aws-target-groups["http"].arn.
	Field   string
	Message string
	// Provider is the cloud the problem belongs to, empty for shared ones.
	Provider string
	// Port is the Service port the problem is about, 0 when the whole
	// annotation is broken or the port key does not resolve.
	Port int32
	// Kept is true when the problem's port stays bound all the same: by
	// the last good binding while the annotation is broken, or by another
	// key naming the same port. Such a problem does not hold gates.
	Kept bool
}

func (p Problem) String() string { return p.Field + ": " + p.Message }

// ParsedService is what a Service's annotations ask of podlb.
type ParsedService struct {
	Bindings []*providers.Binding
	Problems []Problem
	// Annotated is true when the Service carries an annotation of one of
	// the configured providers, valid or not: podlb then owns the Service's
	// finalizer and status.
	Annotated bool
	// Ignored lists annotation keys of clouds this controller does not
	// serve, so status can say why nothing happens for them.
	Ignored []string
}

// KnownCloudAnnotations maps every cloud annotation podlb understands to its
// provider name, so a controller configured for one cloud can say that it
// ignores the other's.
var KnownCloudAnnotations = map[string]string{
	"podlb.io/aws-target-groups": "aws",
	"podlb.io/gcp-negs":          "gcp",
}

// ParseService reads the bindings a Service asks for on the given
// providers. It never fails as a whole: every problem is reported with
// the field that causes it and only the affected port is left out.
func ParseService(svc *corev1.Service, cluster string, provs []providers.Provider) ParsedService {
	var out ParsedService
	mode := providers.ReadyWhenHealthy
	switch v := strings.TrimSpace(svc.Annotations[AnnotationReadiness]); v {
	case "", string(providers.ReadyWhenHealthy):
	case string(providers.ReadyWhenRegistered):
		mode = providers.ReadyWhenRegistered
	default:
		out.Problems = append(out.Problems, Problem{Field: AnnotationReadiness,
			Message: fmt.Sprintf("unknown value %q: want %q or %q (using %q)", v, providers.ReadyWhenHealthy, providers.ReadyWhenRegistered, providers.ReadyWhenHealthy)})
	}

	configured := map[string]bool{}
	for _, p := range provs {
		configured[p.AnnotationKey()] = true
		raw, ok := svc.Annotations[p.AnnotationKey()]
		if !ok {
			continue
		}
		out.Annotated = true
		bs, problems := parseProviderAnnotation(svc, cluster, p, raw, mode)
		out.Bindings = append(out.Bindings, bs...)
		out.Problems = append(out.Problems, problems...)
	}
	for key := range KnownCloudAnnotations {
		if _, ok := svc.Annotations[key]; ok && !configured[key] {
			out.Ignored = append(out.Ignored, key)
		}
	}
	sort.Strings(out.Ignored)
	for i, p := range out.Problems {
		out.Problems[i].Field = providers.Bounded(p.Field, maxField)
		out.Problems[i].Message = providers.Bounded(p.Message, providers.MaxMessage)
	}
	return out
}

// maxField bounds a problem's field name, which quotes the port key.
const maxField = 256

func parseProviderAnnotation(svc *corev1.Service, cluster string, p providers.Provider, raw string, mode providers.ReadinessMode) ([]*providers.Binding, []Problem) {
	key := p.AnnotationKey()
	var entries map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(raw))
	if err := dec.Decode(&entries); err != nil || dec.More() {
		msg := "not a JSON object"
		if err != nil {
			msg = "malformed JSON: " + err.Error()
		}
		return nil, []Problem{{Field: key, Message: msg + ` (want {"<port number or name>": {...}})`, Provider: p.Name()}}
	}
	if entries == nil {
		return nil, []Problem{{Field: key, Message: `want a JSON object {"<port number or name>": {...}}, got null`, Provider: p.Name()}}
	}
	portKeys := make([]string, 0, len(entries))
	for k := range entries {
		portKeys = append(portKeys, k)
	}
	sort.Strings(portKeys)

	var bindings []*providers.Binding
	var problems []Problem
	seen := map[int32]string{}
	for _, pk := range portKeys {
		field := fmt.Sprintf("%s[%q]", key, pk)
		sp, err := resolvePort(svc, pk)
		if err != nil {
			problems = append(problems, Problem{Field: field, Message: err.Error(), Provider: p.Name()})
			continue
		}
		if prev, dup := seen[sp.Port]; dup {
			problems = append(problems, Problem{Field: field, Message: fmt.Sprintf("port %d is already bound by %q; this entry is ignored", sp.Port, prev),
				Provider: p.Name(), Port: sp.Port})
			continue
		}
		spec, err := p.ParseSpec(entries[pk])
		if err != nil {
			f := field
			var pe *providers.Error
			if errors.As(err, &pe) && pe.Field != "" {
				f = field + "." + pe.Field
				err = pe.Err
			}
			problems = append(problems, Problem{Field: f, Message: err.Error(), Provider: p.Name(), Port: sp.Port})
			continue
		}
		seen[sp.Port] = pk
		b := &providers.Binding{
			Key:      providers.BindingKey{Namespace: svc.Namespace, Service: svc.Name, Provider: p.Name(), Port: sp.Port},
			Cluster:  cluster,
			PortName: sp.Name,
			Protocol: string(sp.Protocol),
			Mode:     mode,
			Spec:     spec,
			SpecRaw:  string(entries[pk]),
		}
		if b.Protocol == "" {
			b.Protocol = string(corev1.ProtocolTCP)
		}
		if sp.TargetPort.Type == 0 && sp.TargetPort.IntVal != 0 {
			b.TargetPort = sp.TargetPort.IntVal
		} else if sp.TargetPort.Type == 0 {
			// An unset targetPort defaults to the port itself.
			b.TargetPort = sp.Port
		}
		bindings = append(bindings, b)
	}
	// A port named twice, once well and once badly, stays bound by the
	// good entry: its problem must not hold the pods' gates.
	for i := range problems {
		if _, bound := seen[problems[i].Port]; bound && problems[i].Port != 0 {
			problems[i].Kept = true
		}
	}
	return bindings, unresolvedSummarised(key, p.Name(), problems)
}

// maxUnresolved is how many keys naming no port are reported one by one.
const maxUnresolved = 3

// unresolvedSummarised keeps the first maxUnresolved problems of keys that
// name no port and sums up the rest in one, so that an annotation with
// thousands of keys is a few Warnings rather than thousands.
func unresolvedSummarised(key, provider string, problems []Problem) []Problem {
	var out []Problem
	more := 0
	for _, pr := range problems {
		if pr.Port == 0 {
			if more++; more > maxUnresolved {
				continue
			}
		}
		out = append(out, pr)
	}
	if more > maxUnresolved {
		out = append(out, Problem{Field: key, Provider: provider,
			Message: fmt.Sprintf("%d more keys name no port of the Service", more-maxUnresolved)})
	}
	return out
}

// resolvePort finds the Service port a key names: a number matches
// spec.ports[].port, anything else spec.ports[].name.
func resolvePort(svc *corev1.Service, key string) (corev1.ServicePort, error) {
	if n, err := strconv.ParseInt(key, 10, 32); err == nil {
		for _, sp := range svc.Spec.Ports {
			if int64(sp.Port) == n {
				return sp, nil
			}
		}
		return corev1.ServicePort{}, fmt.Errorf("the Service has no port %d (ports: %s)", n, describePorts(svc))
	}
	if key == "" {
		return corev1.ServicePort{}, fmt.Errorf("empty port key (ports: %s)", describePorts(svc))
	}
	for _, sp := range svc.Spec.Ports {
		if sp.Name == key {
			return sp, nil
		}
	}
	return corev1.ServicePort{}, fmt.Errorf("the Service has no port named %q (ports: %s)", key, describePorts(svc))
}

func describePorts(svc *corev1.Service) string {
	if len(svc.Spec.Ports) == 0 {
		return "none"
	}
	parts := make([]string, len(svc.Spec.Ports))
	for i, sp := range svc.Spec.Ports {
		s := fmt.Sprintf("%d/%s", sp.Port, sp.Protocol)
		if sp.Name != "" {
			s += fmt.Sprintf(" %q", sp.Name)
		}
		parts[i] = s
	}
	return strings.Join(parts, ", ")
}
