package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	yaml3 "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1 "istio.io/api/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// keygate's runtime surface the manifests must agree with.
const (
	grpcPort        = 9001 // ext_authz gRPC, grpc.health.v1
	httpPort        = 9002 // /healthz, /readyz, /metrics
	livenessPath    = "/healthz"
	readinessPath   = "/readyz" // fails while PostgreSQL is unreachable
	drainSeconds    = 15        // keygate's graceful drain on SIGTERM
	maxIstioTimeout = time.Second
)

// healthPaths are the only paths an AuthorizationPolicy may exempt.
var healthPaths = []string{"/healthz", "/readyz", "/livez"}

// manifest is one YAML document of a file under deploy/.
type manifest struct {
	file string
	obj  map[string]any
}

func (m manifest) String() string {
	return fmt.Sprintf("%s: %s %q", m.file, str(m.obj, "kind"), str(m.obj, "metadata", "name"))
}

func TestManifests(t *testing.T) {
	docs := mustLoad(t)
	if len(docs) == 0 {
		t.Fatal("no manifests found under deploy/")
	}
	if err := check(docs); err != nil {
		t.Fatalf("manifests do not pass the check:\n%v", err)
	}
}

// TestCheckFails proves the check can fail: each case breaks one thing.
func TestCheckFails(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(tb testing.TB, docs []manifest)
		want   string
	}{
		{"document without a name", func(tb testing.TB, docs []manifest) {
			delete(dig(tb, find(tb, docs, "Secret", "keygate-database"), "metadata").(map[string]any), "name")
		}, "metadata.name"},
		{"namespaced object without a namespace", func(tb testing.TB, docs []manifest) {
			delete(dig(tb, find(tb, docs, "Deployment", "keygate"), "metadata").(map[string]any), "namespace")
		}, "metadata.namespace"},
		{"one replica", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "Deployment", "keygate"), "spec").(map[string]any)["replicas"] = 1.0
		}, "replicas"},
		{"readiness on /readyz", func(tb testing.TB, docs []manifest) {
			probe(tb, docs, "readinessProbe")["path"] = "/readyz"
		}, "readinessProbe"},
		{"liveness on /readyz", func(tb testing.TB, docs []manifest) {
			probe(tb, docs, "livenessProbe")["path"] = "/readyz"
		}, "livenessProbe"},
		{"startup probe on /healthz", func(tb testing.TB, docs []manifest) {
			probe(tb, docs, "startupProbe")["path"] = "/healthz"
		}, "startupProbe"},
		{"probe on a path keygate does not serve", func(tb testing.TB, docs []manifest) {
			probe(tb, docs, "livenessProbe")["path"] = "/health"
		}, `"/health"`},
		{"probe on the gRPC port", func(tb testing.TB, docs []manifest) {
			probe(tb, docs, "readinessProbe")["port"] = "grpc"
		}, "port 9001"},
		{"probe on an unknown port name", func(tb testing.TB, docs []manifest) {
			probe(tb, docs, "readinessProbe")["port"] = "metrics"
		}, `"metrics"`},
		{"short termination grace period", func(tb testing.TB, docs []manifest) {
			podSpec(tb, find(tb, docs, "Deployment", "keygate"))["terminationGracePeriodSeconds"] = 10.0
		}, "terminationGracePeriodSeconds"},
		{"gRPC Service port not named for gRPC", func(tb testing.TB, docs []manifest) {
			p := dig(tb, find(tb, docs, "Service", "keygate"), "spec", "ports", 0).(map[string]any)
			p["name"] = "authz"
			delete(p, "appProtocol")
		}, "grpc"},
		{"runs as root", func(tb testing.TB, docs []manifest) {
			sc := podSpec(tb, find(tb, docs, "Deployment", "keygate"))["securityContext"].(map[string]any)
			delete(sc, "runAsNonRoot")
			sc["runAsUser"] = 0.0
		}, "runAsNonRoot"},
		{"writable root filesystem", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Job", "keygate-migrate"), "migrate")["securityContext"].(map[string]any)["readOnlyRootFilesystem"] = false
		}, "readOnlyRootFilesystem"},
		{"capabilities kept", func(tb testing.TB, docs []manifest) {
			delete(container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["securityContext"].(map[string]any), "capabilities")
		}, "capabilities.drop"},
		{"database URL from a missing Secret", func(tb testing.TB, docs []manifest) {
			env := container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["env"].([]any)
			dig(tb, env[0], "valueFrom", "secretKeyRef").(map[string]any)["name"] = "keygate-db"
		}, `"keygate-db"`},
		{"migration Job that does not migrate", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Job", "keygate-migrate"), "migrate")["args"] = []any{"serve"}
		}, "migrate"},
		{"no PodDisruptionBudget", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "PodDisruptionBudget", "keygate"), "spec", "selector", "matchLabels").(map[string]any)["app"] = "other"
		}, "PodDisruptionBudget"},
		{"provider fails open", func(tb testing.TB, docs []manifest) {
			grpcProvider(tb, docs)["failOpen"] = true
		}, "failOpen"},
		{"provider failOpen left to the default", func(tb testing.TB, docs []manifest) {
			delete(grpcProvider(tb, docs), "failOpen")
		}, "failOpen"},
		{"provider without timeout", func(tb testing.TB, docs []manifest) {
			delete(grpcProvider(tb, docs), "timeout")
		}, "timeout"},
		{"provider timeout of Istio's default", func(tb testing.TB, docs []manifest) {
			grpcProvider(tb, docs)["timeout"] = "600s"
		}, "timeout"},
		{"provider on the HTTP port", func(tb testing.TB, docs []manifest) {
			grpcProvider(tb, docs)["port"] = 9002.0
		}, "port 9002"},
		{"provider naming a missing Service", func(tb testing.TB, docs []manifest) {
			grpcProvider(tb, docs)["service"] = "keygate.default.svc.cluster.local"
		}, "keygate.default.svc.cluster.local"},
		{"policy names an unknown provider", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate"), "spec", "provider").(map[string]any)["name"] = "keygat"
		}, `"keygat"`},
		{"policy exempts an API path", func(tb testing.TB, docs []manifest) {
			op := dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate"), "spec", "rules", 0, "to", 0, "operation").(map[string]any)
			op["notPaths"] = append(op["notPaths"].([]any), "/api/v1/public/*")
		}, "/api/v1/public/*"},
		{"policy without rules", func(tb testing.TB, docs []manifest) {
			delete(dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate"), "spec").(map[string]any), "rules")
		}, "rules"},
		{"policy narrowed by paths", func(tb testing.TB, docs []manifest) {
			op := dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate"), "spec", "rules", 0, "to", 0, "operation").(map[string]any)
			op["paths"] = []any{"/api/v1/projects/*"}
		}, "paths"},

		// Strict decoding into k8s.io/api and istio.io/api types.
		{"misspelt Kubernetes field", func(tb testing.TB, docs []manifest) {
			renameKey(tb, dig(tb, find(tb, docs, "Deployment", "keygate"), "spec").(map[string]any), "revisionHistoryLimit", "revisionHistoryLimt")
		}, `unknown field "spec.revisionHistoryLimt"`},
		{"Kubernetes field in the wrong case", func(tb testing.TB, docs []manifest) {
			renameKey(tb, dig(tb, container(tb, find(tb, docs, "Deployment", "keygate"), "keygate"), "resources").(map[string]any), "limits", "Limits")
		}, `unknown field "spec.template.spec.containers[0].resources.Limits"`},
		{"Kubernetes value of the wrong type", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "Job", "keygate-migrate"), "spec").(map[string]any)["backoffLimit"] = "six"
		}, "backoffLimit"},
		{"unknown Kubernetes kind", func(tb testing.TB, docs []manifest) {
			find(tb, docs, "ServiceAccount", "keygate")["kind"] = "ServiceAcount"
		}, `no kind "ServiceAcount" is registered`},
		{"misspelt Istio policy field", func(tb testing.TB, docs []manifest) {
			renameKey(tb, dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate"), "spec", "provider").(map[string]any), "name", "nmae")
		}, `unknown field "nmae"`},
		{"Istio field by its proto name", func(tb testing.TB, docs []manifest) {
			renameKey(tb, dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate"), "spec", "selector").(map[string]any), "matchLabels", "match_labels")
		}, "spec.selector.match_labels: write matchLabels"},
		{"status on an Istio object", func(tb testing.TB, docs []manifest) {
			find(tb, docs, "AuthorizationPolicy", "keygate")["status"] = map[string]any{}
		}, `unknown field "status"`},
		{"invalid Istio enum value", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate"), "spec").(map[string]any)["action"] = "CUSTOMS"
		}, "invalid value for enum"},
		{"misspelt mesh config field", func(tb testing.TB, docs []manifest) {
			renameKey(tb, grpcProvider(tb, docs), "statusOnError", "statusOnErorr")
		}, `unknown field "statusOnErorr"`},
		{"mesh config duration without a unit", func(tb testing.TB, docs []manifest) {
			grpcProvider(tb, docs)["timeout"] = "0.25"
		}, "google.protobuf.Duration"},
		{"deprecated mesh config field", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "IstioOperator", "keygate"), "spec", "meshConfig").(map[string]any)["verifyCertificateAtClient"] = true
		}, "spec.meshConfig.verifyCertificateAtClient is deprecated"},
		{"IstioOperator setting more than meshConfig", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "IstioOperator", "keygate"), "spec").(map[string]any)["profile"] = "default"
		}, "spec.profile: this overlay sets only spec.meshConfig"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			docs := mustLoad(t)
			tc.mutate(t, docs)
			err := check(docs)
			if err == nil {
				t.Fatalf("check passed; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// check returns every problem found in the manifests, or nil: strict
// decoding into the real types, then the assertions.
func check(docs []manifest) error {
	_, errs := decodeStrict(docs)
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	secrets := map[string]map[string]bool{} // namespace/name → keys
	for _, d := range docs {
		for _, f := range [][]string{{"apiVersion"}, {"kind"}, {"metadata", "name"}} {
			if str(d.obj, f...) == "" {
				fail("%s: %s is not set", d, strings.Join(f, "."))
			}
		}
		if str(d.obj, "kind") != "Namespace" && str(d.obj, "metadata", "namespace") == "" {
			fail("%s: metadata.namespace is not set (the object would land in whatever namespace kubectl defaults to)", d)
		}
		if str(d.obj, "kind") == "Secret" {
			keys := map[string]bool{}
			for _, field := range []string{"data", "stringData"} {
				m, _ := get(d.obj, field).(map[string]any)
				for k := range m {
					keys[k] = true
				}
			}
			secrets[str(d.obj, "metadata", "namespace")+"/"+str(d.obj, "metadata", "name")] = keys
		}
	}

	// Pod templates: hardening, and secrets that exist.
	for _, d := range docs {
		spec, ok := get(d.obj, "spec", "template", "spec").(map[string]any)
		if !ok {
			continue
		}
		errs = append(errs, podAssertions(d, spec, secrets)...)
	}

	deployments := byKind(docs, "Deployment")
	var server *manifest
	for i, d := range deployments {
		if c := containerNamed(d.obj, "keygate"); c != nil && slices.Contains(strs(c["args"]), "serve") {
			server = &deployments[i]
		}
	}
	if server == nil {
		fail(`no Deployment runs a "keygate" container with args [serve]`)
		return errors.Join(errs...)
	}
	errs = append(errs, serverAssertions(*server)...)
	podLabels, _ := get(server.obj, "spec", "template", "metadata", "labels").(map[string]any)

	// Migration Job.
	if !slices.ContainsFunc(byKind(docs, "Job"), func(d manifest) bool {
		c := containerNamed(d.obj, "migrate")
		return c != nil && slices.Equal(strs(c["args"]), []string{"migrate"})
	}) {
		fail(`no Job runs a "migrate" container with args [migrate]`)
	}
	for _, d := range byKind(docs, "Job") {
		if rp := str(d.obj, "spec", "template", "spec", "restartPolicy"); rp != "OnFailure" && rp != "Never" {
			fail("%s: restartPolicy must be OnFailure or Never", d)
		}
	}

	// PodDisruptionBudget covering the server pods.
	if !slices.ContainsFunc(byKind(docs, "PodDisruptionBudget"), func(d manifest) bool {
		sel, _ := get(d.obj, "spec", "selector", "matchLabels").(map[string]any)
		return d.namespace() == server.namespace() && selects(sel, podLabels)
	}) {
		fail("no PodDisruptionBudget selects the keygate server pods")
	}

	// Services in front of the server pods: the gRPC port is named for gRPC.
	grpcServices := map[string]float64{} // FQDN → service port of keygate's gRPC
	for _, d := range byKind(docs, "Service") {
		sel, _ := get(d.obj, "spec", "selector").(map[string]any)
		if d.namespace() != server.namespace() || !selects(sel, podLabels) {
			continue
		}
		ports, _ := get(d.obj, "spec", "ports").([]any)
		for i, p := range ports {
			pm, _ := p.(map[string]any)
			target := pm["targetPort"]
			if target == nil {
				target = pm["port"]
			}
			if resolvePort(containerNamed(server.obj, "keygate"), target) != grpcPort {
				continue
			}
			name, _ := pm["name"].(string)
			if name != "grpc" && !strings.HasPrefix(name, "grpc-") && pm["appProtocol"] != "grpc" {
				fail("%s: port %d (%q) reaches keygate's gRPC port; name it grpc-* or set appProtocol: grpc, or Istio treats it as opaque TCP", d, i, name)
				continue
			}
			port, _ := pm["port"].(float64)
			grpcServices[fmt.Sprintf("%s.%s.svc.cluster.local", str(d.obj, "metadata", "name"), d.namespace())] = port
		}
	}
	if len(grpcServices) == 0 {
		fail("no Service exposes keygate's gRPC port %d", grpcPort)
	}

	// Istio: the extension provider and the policies that use it.
	providers := map[string]bool{}
	for _, d := range docs {
		list, _ := get(d.obj, "spec", "meshConfig", "extensionProviders").([]any)
		for i, p := range list {
			pm, _ := p.(map[string]any)
			name, _ := pm["name"].(string)
			providers[name] = true
			g, ok := pm["envoyExtAuthzGrpc"].(map[string]any)
			if !ok {
				continue
			}
			at := fmt.Sprintf("%s: extensionProviders[%d] (%q)", d, i, name)
			svc, _ := g["service"].(string)
			want, ok := grpcServices[svc]
			switch port, _ := g["port"].(float64); {
			case !ok:
				fail("%s: service %q is not a Service in front of keygate's gRPC port", at, svc)
			case port != want:
				fail("%s: port %v; the Service %s serves keygate's gRPC on port %v", at, port, svc, want)
			}
			if fo, ok := g["failOpen"].(bool); !ok || fo {
				fail("%s: failOpen must be set to false explicitly (fail closed)", at)
			}
			ts, _ := g["timeout"].(string)
			if d, err := time.ParseDuration(ts); err != nil || d <= 0 || d > maxIstioTimeout {
				fail("%s: timeout %q; set one above 0 and at most %v (Istio's default is 600s)", at, ts, maxIstioTimeout)
			}
		}
	}
	for _, d := range byKind(docs, "AuthorizationPolicy") {
		if str(d.obj, "spec", "action") != "CUSTOM" {
			continue
		}
		if p := str(d.obj, "spec", "provider", "name"); !providers[p] {
			fail("%s: provider %q is not an extension provider in the mesh config", d, p)
		}
		errs = append(errs, customRuleAssertions(d)...)
	}
	return errors.Join(errs...)
}

// serverAssertions checks the keygate server Deployment.
func serverAssertions(d manifest) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{d}, args...)...))
	}

	if r, _ := get(d.obj, "spec", "replicas").(float64); r < 2 {
		fail("replicas is %v; run at least 2 (every request waits for keygate)", r)
	}
	sel, _ := get(d.obj, "spec", "selector", "matchLabels").(map[string]any)
	labels, _ := get(d.obj, "spec", "template", "metadata", "labels").(map[string]any)
	if len(sel) == 0 || !selects(sel, labels) {
		fail("spec.selector.matchLabels does not select the pod template's labels")
	}
	if g, _ := get(d.obj, "spec", "template", "spec", "terminationGracePeriodSeconds").(float64); g < drainSeconds+5 {
		fail("terminationGracePeriodSeconds is %v; keygate drains for up to %d s after SIGTERM", g, drainSeconds)
	}

	c := containerNamed(d.obj, "keygate")
	for name, want := range map[string]float64{"grpc": grpcPort, "http": httpPort} {
		if got := resolvePort(c, name); got != want {
			fail("container port %q is %v; want %v", name, got, want)
		}
	}
	// Readiness must not depend on PostgreSQL (cached keys keep working
	// through an outage); the startup probe waits for the first connection.
	for probeName, want := range map[string]string{
		"startupProbe":   readinessPath,
		"readinessProbe": livenessPath,
		"livenessProbe":  livenessPath,
	} {
		p, ok := c[probeName].(map[string]any)
		if !ok {
			fail("%s is not set", probeName)
			continue
		}
		path := str(p, "httpGet", "path")
		if path != livenessPath && path != readinessPath {
			fail("%s: path %q is not a keygate endpoint (%s, %s)", probeName, path, livenessPath, readinessPath)
		} else if path != want {
			fail("%s: path %s; want %s", probeName, path, want)
		}
		switch port := get(p, "httpGet", "port"); resolvePort(c, port) {
		case httpPort:
		case 0:
			fail("%s: port %q is not a port of the container", probeName, fmt.Sprint(port))
		default:
			fail("%s: port %v is port %v; keygate serves %s and %s on port %d", probeName, port, resolvePort(c, port), livenessPath, readinessPath, httpPort)
		}
	}
	return errs
}

// podAssertions checks a pod template: non-root, read-only root, no
// privilege escalation, every capability dropped, resources requested, a
// pinned image, and env Secrets that exist.
func podAssertions(d manifest, spec map[string]any, secrets map[string]map[string]bool) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{d}, args...)...))
	}

	podNonRoot, _ := get(spec, "securityContext", "runAsNonRoot").(bool)
	if u, ok := get(spec, "securityContext", "runAsUser").(float64); ok && u == 0 {
		fail("pod securityContext.runAsUser is 0 (root)")
	}
	containers, _ := spec["containers"].([]any)
	initContainers, _ := spec["initContainers"].([]any)
	for _, c := range append(slices.Clip(containers), initContainers...) {
		cm, _ := c.(map[string]any)
		name, _ := cm["name"].(string)
		at := fmt.Sprintf("container %q", name)
		nonRoot, ok := get(cm, "securityContext", "runAsNonRoot").(bool)
		if !ok {
			nonRoot = podNonRoot
		}
		if !nonRoot {
			fail("%s: runAsNonRoot must be true (pod or container securityContext)", at)
		}
		if u, ok := get(cm, "securityContext", "runAsUser").(float64); ok && u == 0 {
			fail("%s: runAsUser is 0 (root)", at)
		}
		if v, _ := get(cm, "securityContext", "readOnlyRootFilesystem").(bool); !v {
			fail("%s: securityContext.readOnlyRootFilesystem must be true", at)
		}
		if v, ok := get(cm, "securityContext", "allowPrivilegeEscalation").(bool); !ok || v {
			fail("%s: securityContext.allowPrivilegeEscalation must be false", at)
		}
		if !slices.Contains(strs(get(cm, "securityContext", "capabilities", "drop")), "ALL") {
			fail("%s: securityContext.capabilities.drop must contain ALL", at)
		}
		if get(cm, "resources", "requests") == nil {
			fail("%s: resources.requests is not set", at)
		}
		if img, _ := cm["image"].(string); img == "" || strings.HasSuffix(img, ":latest") || !strings.Contains(img, ":") && !strings.Contains(img, "@") {
			fail("%s: image %q must name a tag or digest other than latest", at, img)
		}
		env, _ := cm["env"].([]any)
		for _, e := range env {
			ref, ok := get(e, "valueFrom", "secretKeyRef").(map[string]any)
			if !ok {
				continue
			}
			secret, _ := ref["name"].(string)
			key, _ := ref["key"].(string)
			if !secrets[d.namespace()+"/"+secret][key] {
				fail("%s: env %s reads key %q of Secret %q, which these manifests do not define", at, str(e.(map[string]any), "name"), key, secret)
			}
		}
	}
	if len(containers) == 0 {
		fail("pod template has no containers")
	}
	return errs
}

// customRuleAssertions checks a CUSTOM AuthorizationPolicy: it must have
// rules (a CUSTOM policy without rules matches nothing), and they may only
// exempt health paths, so every other request goes through keygate.
func customRuleAssertions(d manifest) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{d}, args...)...))
	}
	rules, _ := get(d.obj, "spec", "rules").([]any)
	if len(rules) == 0 {
		fail("spec.rules is empty: a CUSTOM policy without rules sends nothing to the provider")
	}
	for i, r := range rules {
		rm, _ := r.(map[string]any)
		for k := range rm {
			if k != "to" {
				fail("rules[%d].%s narrows which requests are checked; only exempt health paths (to.operation.notPaths)", i, k)
			}
		}
		to, _ := rm["to"].([]any)
		for j, t := range to {
			op, _ := get(t, "operation").(map[string]any)
			for k := range op {
				if k != "notPaths" {
					fail("rules[%d].to[%d].operation.%s narrows which requests are checked; only exempt health paths (notPaths)", i, j, k)
				}
			}
			for _, p := range strs(op["notPaths"]) {
				if !slices.Contains(healthPaths, p) {
					fail("rules[%d].to[%d].operation.notPaths exempts %q; only health paths %v may skip keygate", i, j, p, healthPaths)
				}
			}
		}
	}
	return errs
}

// Strict typed decoding.
//
// The generic checks above read the manifests as maps, so a misspelt or
// unknown field is invisible to them: Kubernetes drops it (or, with
// server-side field validation, refuses the object) and the setting
// silently does not apply. decodeStrict decodes every document into its
// real type: Kubernetes kinds with apimachinery's strict decoder (the one
// behind kubectl's --validate=strict: unknown, duplicate and wrongly cased
// fields fail), Istio kinds' spec into istio.io/api's protobuf messages
// (unknown fields fail, only the JSON names the CRD schema knows are
// accepted, no deprecated fields).

// k8sDecoder decodes the Kubernetes kinds the manifests may use.
var k8sDecoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// istioSpecs are the Istio kinds (apiVersion/kind) whose spec is an
// istio.io/api message.
var istioSpecs = map[string]func() proto.Message{
	"security.istio.io/v1/AuthorizationPolicy":      func() proto.Message { return new(securityv1.AuthorizationPolicy) },
	"security.istio.io/v1beta1/AuthorizationPolicy": func() proto.Message { return new(securityv1.AuthorizationPolicy) },
}

// istioOperator is the IstioOperator kind. Its API lives in istio.io/istio,
// not istio.io/api, so only its meshConfig can be decoded into a real type
// (istio.io/api's MeshConfig, the same message the istiod chart's meshConfig
// values and the istio ConfigMap's mesh key hold): the overlay must set
// nothing else.
const istioOperator = "install.istio.io/v1alpha1/IstioOperator"

// istioObject is the Kubernetes envelope of an Istio custom resource.
type istioObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            json.RawMessage   `json:"spec"`
}

// typed is a manifest decoded into its type.
type typed struct {
	manifest
	k8s  runtime.Object // a Kubernetes kind, or nil
	spec proto.Message  // an Istio kind's spec (MeshConfig for an IstioOperator), or nil
}

// decodeStrict decodes every manifest into its type and returns the
// problems found.
func decodeStrict(docs []manifest) ([]typed, []error) {
	var out []typed
	var errs []error
	for _, d := range docs {
		t, err := decodeOne(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: strict decoding: %w", d, err))
			continue
		}
		out = append(out, t)
	}
	return out, errs
}

func decodeOne(d manifest) (typed, error) {
	js, err := json.Marshal(d.obj)
	if err != nil {
		return typed{}, err
	}
	gvk := str(d.obj, "apiVersion") + "/" + str(d.obj, "kind")
	newSpec, isIstio := istioSpecs[gvk]
	if !isIstio && gvk != istioOperator {
		obj, _, err := k8sDecoder.Decode(js, nil, nil)
		if err != nil {
			return typed{}, err
		}
		return typed{manifest: d, k8s: obj}, nil
	}
	var env istioObject
	strict, err := sigsjson.UnmarshalStrict(js, &env)
	if err = errors.Join(append(strict, err)...); err != nil {
		return typed{}, err
	}
	if len(env.Spec) == 0 {
		return typed{}, errors.New("spec is not set")
	}
	if gvk == istioOperator {
		var spec map[string]json.RawMessage
		if err := json.Unmarshal(env.Spec, &spec); err != nil {
			return typed{}, fmt.Errorf("spec: %w", err)
		}
		for k := range spec {
			if k != "meshConfig" {
				return typed{}, fmt.Errorf("spec.%s: this overlay sets only spec.meshConfig (the rest of IstioOperator's API is in istio.io/istio and cannot be checked here)", k)
			}
		}
		if spec["meshConfig"] == nil {
			return typed{}, errors.New("spec.meshConfig is not set")
		}
		mesh := new(meshv1alpha1.MeshConfig)
		if err := protoStrict(spec["meshConfig"], mesh, "spec.meshConfig"); err != nil {
			return typed{}, err
		}
		return typed{manifest: d, spec: mesh}, nil
	}
	spec := newSpec()
	if err := protoStrict(env.Spec, spec, "spec"); err != nil {
		return typed{}, err
	}
	return typed{manifest: d, spec: spec}, nil
}

// protoStrict decodes JSON into m the way Istio's CRD schemas read it:
// unknown fields fail (protojson, DiscardUnknown false), only each field's
// JSON name is accepted (protojson would also take the proto name,
// match_labels for matchLabels, which the CRD schema does not know), and
// deprecated fields fail.
func protoStrict(js []byte, m proto.Message, path string) error {
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var tree any
	if err := json.Unmarshal(js, &tree); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	errs := jsonNames(path, m.ProtoReflect().Descriptor(), tree)
	errs = append(errs, protoDeprecations(path, m.ProtoReflect())...)
	return errors.Join(errs...)
}

// jsonNames reports object keys under a message that are not the JSON name
// of one of its fields.
func jsonNames(path string, md protoreflect.MessageDescriptor, v any) []error {
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return nil // well-known types have their own JSON forms
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil // protojson already refused a non-object
	}
	var errs []error
	for key, val := range obj {
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			if alt := md.Fields().ByName(protoreflect.Name(key)); alt != nil {
				errs = append(errs, fmt.Errorf("%s.%s: write %s (the JSON name Istio's schema knows)", path, key, alt.JSONName()))
			}
			continue
		}
		p := path + "." + key
		switch {
		case fd.IsMap():
			if vd := fd.MapValue().Message(); vd != nil {
				m, _ := val.(map[string]any)
				for k, e := range m {
					errs = append(errs, jsonNames(fmt.Sprintf("%s[%q]", p, k), vd, e)...)
				}
			}
		case fd.Message() != nil && fd.IsList():
			l, _ := val.([]any)
			for i, e := range l {
				errs = append(errs, jsonNames(fmt.Sprintf("%s[%d]", p, i), fd.Message(), e)...)
			}
		case fd.Message() != nil:
			errs = append(errs, jsonNames(p, fd.Message(), val)...)
		}
	}
	return errs
}

// protoDeprecations reports deprecated fields set anywhere in m.
func protoDeprecations(path string, m protoreflect.Message) []error {
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + fd.JSONName()
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			errs = append(errs, fmt.Errorf("%s is deprecated", p))
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					errs = append(errs, protoDeprecations(fmt.Sprintf("%s[%q]", p, k.String()), mv.Message())...)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := range v.List().Len() {
					errs = append(errs, protoDeprecations(fmt.Sprintf("%s[%d]", p, i), v.List().Get(i).Message())...)
				}
			}
		case fd.Message() != nil:
			errs = append(errs, protoDeprecations(p, v.Message())...)
		}
		return true
	})
	return errs
}

// Loading.

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// mustLoad parses every YAML document in every .yaml/.yml file under the
// package directory.
// manifestDirs hold the Kubernetes (and Istio) manifests.
var manifestDirs = []string{"kubernetes", "istio"}

func mustLoad(tb testing.TB) []manifest {
	tb.Helper()
	var docs []manifest
	err := filepath.WalkDir(".", func(path string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() && path != "." && !slices.Contains(manifestDirs, path) {
			return filepath.SkipDir // not Kubernetes manifests: their own tests check them
		}
		if err != nil || e.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, part := range docSeparator.Split(string(b), -1) {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(part), &obj); err != nil {
				return fmt.Errorf("%s: document %d: %w", path, i, err)
			}
			if obj != nil { // comment-only or empty
				docs = append(docs, manifest{file: path, obj: obj})
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return docs
}

// Generic map access.

func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

// strs returns the strings of a list, skipping other elements.
func strs(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (m manifest) namespace() string { return str(m.obj, "metadata", "namespace") }

func byKind(docs []manifest, kind string) []manifest {
	var out []manifest
	for _, d := range docs {
		if str(d.obj, "kind") == kind {
			out = append(out, d)
		}
	}
	return out
}

// selects reports whether every selector label is among labels.
func selects(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerNamed returns the named container of a workload's pod template.
func containerNamed(obj map[string]any, name string) map[string]any {
	cs, _ := get(obj, "spec", "template", "spec", "containers").([]any)
	for _, c := range cs {
		if cm, ok := c.(map[string]any); ok && cm["name"] == name {
			return cm
		}
	}
	return nil
}

// resolvePort returns the container port number a port reference (a number
// or a port name) designates, or 0.
func resolvePort(container map[string]any, ref any) float64 {
	switch r := ref.(type) {
	case float64:
		return r
	case string:
		ports, _ := container["ports"].([]any)
		for _, p := range ports {
			if pm, ok := p.(map[string]any); ok && pm["name"] == r {
				n, _ := pm["containerPort"].(float64)
				return n
			}
		}
	}
	return 0
}

// Mutation helpers for the negative cases.

func find(tb testing.TB, docs []manifest, kind, name string) map[string]any {
	tb.Helper()
	for _, d := range docs {
		if str(d.obj, "kind") == kind && str(d.obj, "metadata", "name") == name {
			return d.obj
		}
	}
	tb.Fatalf("no %s %q", kind, name)
	return nil
}

// dig follows map keys and list indexes; a missing step fails the test.
func dig(tb testing.TB, v any, steps ...any) any {
	tb.Helper()
	for _, s := range steps {
		switch s := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok || m[s] == nil {
				tb.Fatalf("%v: no key %q", steps, s)
			}
			v = m[s]
		case int:
			l, ok := v.([]any)
			if !ok || s >= len(l) {
				tb.Fatalf("%v: no index %d", steps, s)
			}
			v = l[s]
		}
	}
	return v
}

// renameKey renames a key, which must exist, so a mutation cannot silently
// miss.
func renameKey(tb testing.TB, m map[string]any, from, to string) {
	tb.Helper()
	v, ok := m[from]
	if !ok {
		tb.Fatalf("no key %q to rename", from)
	}
	delete(m, from)
	m[to] = v
}

func podSpec(tb testing.TB, obj map[string]any) map[string]any {
	tb.Helper()
	return dig(tb, obj, "spec", "template", "spec").(map[string]any)
}

func container(tb testing.TB, obj map[string]any, name string) map[string]any {
	tb.Helper()
	c := containerNamed(obj, name)
	if c == nil {
		tb.Fatalf("no container %q", name)
	}
	return c
}

func probe(tb testing.TB, docs []manifest, name string) map[string]any {
	tb.Helper()
	return dig(tb, container(tb, find(tb, docs, "Deployment", "keygate"), "keygate"), name, "httpGet").(map[string]any)
}

func grpcProvider(tb testing.TB, docs []manifest) map[string]any {
	tb.Helper()
	for _, d := range docs {
		list, _ := get(d.obj, "spec", "meshConfig", "extensionProviders").([]any)
		for _, p := range list {
			if g, ok := get(p, "envoyExtAuthzGrpc").(map[string]any); ok {
				return g
			}
		}
	}
	tb.Fatal("no envoyExtAuthzGrpc extension provider")
	return nil
}

// Duplicate keys.
//
// Most YAML readers (sigs.k8s.io/yaml, which kubectl and the tests above
// use, Envoy's, Docker Compose's) keep the last of two equal keys in a
// mapping without a word, so a duplicated key silently overrides a setting
// reviewed a screen earlier. Every shipped YAML file is refused if any
// mapping, at any depth, repeats a key.

// requiredYAML must be among the shipped YAML files, so that a broken
// file listing cannot pass by finding nothing.
var requiredYAML = []string{
	"docker-compose.yaml", "envoy/envoy.yaml", "envoy/envoy-http.yaml", "policy/example.yaml",
	"deploy/kubernetes/keygate.yaml", "deploy/istio/mesh-config.yaml", "deploy/prometheus/keygate-rules.yaml",
}

func TestNoDuplicateKeys(t *testing.T) {
	files := shippedYAML(t)
	for _, f := range requiredYAML {
		if !slices.Contains(files, f) {
			t.Errorf("%s is not among the shipped YAML files %v", f, files)
		}
	}
	for _, f := range files {
		if err := duplicateKeys(mustReadFile(t, filepath.Join("..", f))); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestDuplicateKeysFail proves duplicateKeys finds a repeated key at any
// depth, in any document of a file, in block and flow style.
func TestDuplicateKeysFail(t *testing.T) {
	tests := []struct {
		name, file, old, new, want string
	}{
		{"deep in a block mapping", "envoy/envoy.yaml", "    connect_timeout: 0.25s\n", "    connect_timeout: 0.25s\n    connect_timeout: 5s\n", `"connect_timeout" already defined`},
		{"in a flow mapping", "envoy/envoy.yaml", "socket_address: { address: 127.0.0.1, port_value: 9901 }", "socket_address: { address: 127.0.0.1, port_value: 9901, address: 0.0.0.0 }", `"address" already defined`},
		{"in a later document", "deploy/kubernetes/keygate.yaml", "  replicas: 3\n", "  replicas: 3\n  replicas: 1\n", `"replicas" already defined`},
		{"in the mesh config", "deploy/istio/mesh-config.yaml", "          failOpen: false\n", "          failOpen: false\n          failOpen: true\n", `"failOpen" already defined`},
		{"at the top level", "docker-compose.yaml", "services:\n", "services:\nservices:\n", `"services" already defined`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := string(mustReadFile(t, filepath.Join("..", tc.file)))
			if strings.Count(doc, tc.old) != 1 {
				t.Fatalf("%s does not contain %q exactly once", tc.file, tc.old)
			}
			err := duplicateKeys([]byte(strings.Replace(doc, tc.old, tc.new, 1)))
			if err == nil {
				t.Fatalf("duplicateKeys passed; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// shippedYAML lists the repository's YAML files as git sees them: tracked,
// or new and not ignored (so a file not yet added is checked too), relative
// to the repository root.
func shippedYAML(tb testing.TB) []string {
	tb.Helper()
	out, err := exec.Command("git", "-C", "..", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.yaml", "*.yml").Output()
	if err != nil {
		tb.Fatalf("git ls-files (the test lists the shipped files with git): %v", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" || slices.Contains(files, f) {
			continue
		}
		if _, err := os.Stat(filepath.Join("..", f)); errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree, not shipped
		}
		files = append(files, f)
	}
	return files
}

// duplicateKeys returns an error naming every key that a mapping in doc
// repeats, in any of its documents.
func duplicateKeys(doc []byte) error {
	dec := yaml3.NewDecoder(bytes.NewReader(doc))
	var errs []error
	for i := 1; ; i++ {
		var n yaml3.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		for _, err := range repeatedKeys(&n) {
			errs = append(errs, fmt.Errorf("document %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// repeatedKeys walks a node tree (not following aliases) and reports the
// scalar keys a mapping repeats.
func repeatedKeys(n *yaml3.Node) []error {
	var errs []error
	if n.Kind == yaml3.MappingNode {
		first := map[string]int{} // key → line
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml3.ScalarNode {
				continue
			}
			if line, dup := first[k.Value]; dup {
				errs = append(errs, fmt.Errorf("line %d: key %q already defined at line %d", k.Line, k.Value, line))
			} else {
				first[k.Value] = k.Line
			}
		}
	}
	if n.Kind != yaml3.AliasNode {
		for _, c := range n.Content {
			errs = append(errs, repeatedKeys(c)...)
		}
	}
	return errs
}
