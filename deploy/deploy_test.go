package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/keygate/keygate/internal/repofiles"
)

// keygate's runtime surface the manifests must agree with.
const (
	grpcPort        = 9001 // ext_authz gRPC, grpc.health.v1
	httpPort        = 9002 // /healthz, /readyz, /metrics
	livenessPath    = "/healthz"
	readinessPath   = "/readyz" // fails while PostgreSQL is unreachable
	maxIstioTimeout = time.Second

	// keygate serve's shutdown defaults: --drain-delay (not ready, still
	// answering), then up to --shutdown-timeout of graceful stop.
	defaultDrainDelay      = 5 * time.Second
	defaultShutdownTimeout = 15 * time.Second
	// shutdownMargin is the time the grace period leaves after both, for
	// the last-used flush and closing the pool.
	shutdownMargin = 5 * time.Second

	// clientLabel marks the namespaces and pods the NetworkPolicy lets
	// reach keygate's ports (value "true").
	clientLabel = "keygate.io/client"
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

		// The server's settings, the Job's image, the NetworkPolicies.
		{"GOMEMLIMIT hard-coded", func(tb testing.TB, docs []manifest) {
			c := container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")
			c["env"] = append(c["env"].([]any), map[string]any{"name": "GOMEMLIMIT", "value": "230MiB"})
		}, `container "keygate" sets GOMEMLIMIT`},
		{"GOMEMLIMIT in the migration Job", func(tb testing.TB, docs []manifest) {
			c := container(tb, find(tb, docs, "Job", "keygate-migrate"), "migrate")
			c["env"] = append(c["env"].([]any), map[string]any{"name": "GOMEMLIMIT", "value": "100MiB"})
		}, `container "migrate" sets GOMEMLIMIT`},
		{"reflection on by flag", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["args"] = []any{"serve", "--reflection"}
		}, "reflection is on"},
		{"reflection on by environment", func(tb testing.TB, docs []manifest) {
			c := container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")
			c["env"] = append(c["env"].([]any), map[string]any{"name": "KEYGATE_REFLECTION", "value": "true"})
		}, "reflection is on"},
		{"drain longer than the grace period allows", func(tb testing.TB, docs []manifest) {
			env := container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["env"].([]any)
			i := slices.IndexFunc(env, func(e any) bool { return e.(map[string]any)["name"] == "KEYGATE_DRAIN_DELAY" })
			if i < 0 {
				tb.Fatal("no KEYGATE_DRAIN_DELAY")
			}
			env[i].(map[string]any)["value"] = "30s"
		}, "--drain-delay 30s"},
		{"shutdown timeout longer than the grace period allows", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["args"] = []any{"serve", "--shutdown-timeout=30s"}
		}, "--shutdown-timeout 30s"},
		{"preStop pause not counted in the grace period", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["lifecycle"] = map[string]any{"preStop": map[string]any{"sleep": map[string]any{"seconds": 10.0}}}
		}, "preStop 10s"},
		{"liveness by keygate health", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["livenessProbe"] = map[string]any{"exec": map[string]any{"command": []any{"/keygate", "health"}}}
		}, "livenessProbe: `keygate health` reports NOT_SERVING"},
		{"migration Job on another image", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Job", "keygate-migrate"), "migrate")["image"] = "ghcr.io/keygate/keygate:0.0.9"
		}, "migrate with the image that serves"},
		{"no default deny", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "NetworkPolicy", "keygate-default-deny"), "spec").(map[string]any)["podSelector"] = map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/component": "migrate"}}
		}, "denies ingress by default"},
		{"ingress rule admitting every source", func(tb testing.TB, docs []manifest) {
			delete(ingressRule(tb, docs, 0), "from")
		}, "admits every source"},
		{"ingress rule opening every port", func(tb testing.TB, docs []manifest) {
			delete(ingressRule(tb, docs, 0), "ports")
		}, "opens every port"},
		{"ingress to the admin port", func(tb testing.TB, docs []manifest) {
			r := ingressRule(tb, docs, 0)
			r["ports"] = append(r["ports"].([]any), map[string]any{"port": 9003.0})
		}, "is not keygate's gRPC"},
		{"client peer in any namespace", func(tb testing.TB, docs []manifest) {
			dig(tb, ingressRule(tb, docs, 0), "from", 0).(map[string]any)["namespaceSelector"] = map[string]any{}
		}, "must select both namespaces and pods by label"},
		{"client peer by pod label only", func(tb testing.TB, docs []manifest) {
			delete(dig(tb, ingressRule(tb, docs, 0), "from", 0).(map[string]any), "namespaceSelector")
		}, "must select both namespaces and pods by label"},
		{"clients by address", func(tb testing.TB, docs []manifest) {
			ingressRule(tb, docs, 0)["from"] = []any{map[string]any{"ipBlock": map[string]any{"cidr": "0.0.0.0/0"}}}
		}, "ipBlock"},
		{"Prometheus on the gRPC port", func(tb testing.TB, docs []manifest) {
			r := ingressRule(tb, docs, 1)
			r["ports"] = append(r["ports"].([]any), map[string]any{"port": "grpc"})
		}, "reaches the gRPC port 9001 without"},
		{"no Prometheus rule", func(tb testing.TB, docs []manifest) {
			spec := dig(tb, find(tb, docs, "NetworkPolicy", "keygate-server"), "spec").(map[string]any)
			spec["ingress"] = spec["ingress"].([]any)[:1]
		}, "no NetworkPolicy lets Prometheus"},
		{"clients kept off the HTTP port", func(tb testing.TB, docs []manifest) {
			ingressRule(tb, docs, 0)["ports"] = []any{map[string]any{"port": "grpc"}}
		}, "reach port 9002"},

		// What the Istio policies apply to.
		{"waypoint policy that also selects workloads", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate-waypoint"), "spec").(map[string]any)["selector"] = map[string]any{"matchLabels": map[string]any{"app": "api"}}
		}, "sets both selector and targetRefs"},
		{"waypoint policy by the singular targetRef", func(tb testing.TB, docs []manifest) {
			spec := dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate-waypoint"), "spec").(map[string]any)
			spec["targetRef"] = spec["targetRefs"].([]any)[0]
			delete(spec, "targetRefs")
		}, "targetRef is the undocumented singular form"},
		{"no policy for waypoints", func(tb testing.TB, docs []manifest) {
			spec := dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate-waypoint"), "spec").(map[string]any)
			delete(spec, "targetRefs")
			spec["selector"] = map[string]any{"matchLabels": map[string]any{"app": "api"}}
		}, "no AuthorizationPolicy sets targetRefs"},
		{"waypoint policy targeting a Service in the Gateway API group", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate-waypoint"), "spec", "targetRefs", 0).(map[string]any)["group"] = "gateway.networking.k8s.io"
		}, `kind "Service" with group "gateway.networking.k8s.io"`},
		{"waypoint policy targeting a Deployment", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate-waypoint"), "spec", "targetRefs", 0).(map[string]any)["kind"] = "Deployment"
		}, `kind "Deployment"`},
		{"waypoint policy targeting another namespace", func(tb testing.TB, docs []manifest) {
			dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate-waypoint"), "spec", "targetRefs", 0).(map[string]any)["namespace"] = "default"
		}, `namespace "default"`},
		{"sidecar policy for the whole namespace", func(tb testing.TB, docs []manifest) {
			delete(dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate"), "spec").(map[string]any), "selector")
		}, "neither a selector with matchLabels nor targetRefs"},
		{"misspelt targetRefs", func(tb testing.TB, docs []manifest) {
			renameKey(tb, dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate-waypoint"), "spec").(map[string]any), "targetRefs", "targetRefz")
		}, `unknown field "targetRefz"`},
		{"waypoint policy exempts an API path", func(tb testing.TB, docs []manifest) {
			op := dig(tb, find(tb, docs, "AuthorizationPolicy", "keygate-waypoint"), "spec", "rules", 0, "to", 0, "operation").(map[string]any)
			op["notPaths"] = append(op["notPaths"].([]any), "/api/*")
		}, `exempts "/api/*"`},

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

// TestCheckAccepts keeps the check from being stricter than keygate needs:
// each case changes the manifests in a way that is fine.
func TestCheckAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(tb testing.TB, docs []manifest)
	}{
		{"startup probe by keygate health", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["startupProbe"] = map[string]any{"exec": map[string]any{"command": []any{"/keygate", "health"}}, "failureThreshold": 150.0}
		}},
		{"default drain with a preStop pause", func(tb testing.TB, docs []manifest) {
			c := container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")
			c["env"] = slices.DeleteFunc(c["env"].([]any), func(e any) bool { return e.(map[string]any)["name"] == "KEYGATE_DRAIN_DELAY" })
			c["lifecycle"] = map[string]any{"preStop": map[string]any{"sleep": map[string]any{"seconds": 15.0}}}
		}},
		{"drain set by flag", func(tb testing.TB, docs []manifest) {
			container(tb, find(tb, docs, "Deployment", "keygate"), "keygate")["args"] = []any{"serve", "--drain-delay", "20s", "--reflection=false"}
		}},
		{"ports by number", func(tb testing.TB, docs []manifest) {
			ingressRule(tb, docs, 0)["ports"] = []any{map[string]any{"port": 9001.0}, map[string]any{"port": 9002.0, "protocol": "TCP"}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			docs := mustLoad(t)
			tc.mutate(t, docs)
			if err := check(docs); err != nil {
				t.Errorf("check fails:\n%v", err)
			}
		})
	}
}

// check returns every problem found in the manifests, or nil: strict
// decoding into the real types, then the assertions.
func check(docs []manifest) error {
	objs, errs := decodeStrict(docs)
	errs = append(errs, typedAssertions(objs)...)
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

// typedAssertions checks, on the strictly decoded objects, what the
// generic checks do not: the server's environment, flags and shutdown
// budget, the migration Job's image, and the NetworkPolicies.
func typedAssertions(objs []typed) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var server *appsv1.Deployment
	var serverDoc manifest
	var jobs []*batchv1.Job
	var netpols []*networkingv1.NetworkPolicy
	waypoints := false
	for _, o := range objs {
		var spec *corev1.PodSpec
		switch obj := o.k8s.(type) {
		case *appsv1.Deployment:
			spec = &obj.Spec.Template.Spec
			if c := typedContainer(spec, "keygate"); c != nil && slices.Contains(c.Args, "serve") {
				server, serverDoc = obj, o.manifest
			}
		case *batchv1.Job:
			spec = &obj.Spec.Template.Spec
			jobs = append(jobs, obj)
		case *networkingv1.NetworkPolicy:
			netpols = append(netpols, obj)
		}
		if ap, ok := o.spec.(*securityv1.AuthorizationPolicy); ok {
			errs = append(errs, policyTargetAssertions(o.manifest, ap)...)
			if len(ap.GetTargetRefs()) > 0 {
				waypoints = true
			}
		}
		if spec == nil {
			continue
		}
		for _, c := range append(slices.Clip(spec.InitContainers), spec.Containers...) {
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					fail("%s: container %q sets GOMEMLIMIT; keygate sets it to 90%% of the container's memory limit itself, and a fixed value goes stale when the limit changes", o, c.Name)
				}
			}
		}
	}
	if !waypoints {
		fail("no AuthorizationPolicy sets targetRefs: ambient mode's waypoints ignore selector, so they would send nothing through keygate")
	}
	if server == nil {
		return errs // reported by the generic checks
	}
	at := func(format string, args ...any) { fail("%s: "+format, append([]any{serverDoc}, args...)...) }
	c := typedContainer(&server.Spec.Template.Spec, "keygate")

	// gRPC reflection stays off.
	if v, ok := setting(c, "reflection"); ok && v != "false" && v != "0" {
		at("gRPC server reflection is on (--reflection or KEYGATE_REFLECTION); production should not list its services to whoever reaches the port")
	}

	// The grace period covers the preStop hook, the drain and the graceful
	// stop, or the kubelet kills keygate while it still answers.
	drain, err := durationSetting(c, "drain-delay", defaultDrainDelay)
	if err != nil {
		at("%v", err)
	}
	stop, err := durationSetting(c, "shutdown-timeout", defaultShutdownTimeout)
	if err != nil {
		at("%v", err)
	}
	var preStop time.Duration
	if h := c.Lifecycle; h != nil && h.PreStop != nil {
		switch {
		case h.PreStop.Sleep != nil:
			preStop = time.Duration(h.PreStop.Sleep.Seconds) * time.Second
		default:
			at("preStop hook other than sleep: its duration cannot be checked")
		}
	}
	need := preStop + drain + stop + shutdownMargin
	var grace time.Duration
	if g := server.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	} else {
		grace = 30 * time.Second // Kubernetes' default
	}
	if grace < need {
		at("terminationGracePeriodSeconds is %v; keygate needs %v (preStop %v + --drain-delay %v + --shutdown-timeout %v + %v for the flush)", grace.Seconds(), need, preStop, drain, stop, shutdownMargin)
	}

	// Migration and server share one image: the schema is the binary's.
	for _, j := range jobs {
		if m := typedContainer(&j.Spec.Template.Spec, "migrate"); m != nil && m.Image != c.Image {
			fail("Job %q runs image %q; the server runs %q: migrate with the image that serves", j.Name, m.Image, c.Image)
		}
	}

	errs = append(errs, networkPolicyAssertions(server, c, netpols)...)
	return errs
}

// policyTargetAssertions checks what an AuthorizationPolicy applies to:
// either workloads by selector (sidecars, gateways) or, for waypoints,
// targetRefs naming a Service or a Gateway of its own namespace; never
// both, never neither (a policy without either applies to every workload
// of its namespace, or of the mesh in the root namespace).
func policyTargetAssertions(d manifest, ap *securityv1.AuthorizationPolicy) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{d}, args...)...))
	}
	bySelector := len(ap.GetSelector().GetMatchLabels()) > 0
	switch {
	case ap.GetTargetRef() != nil:
		fail("spec.targetRef is the undocumented singular form; use targetRefs")
	case bySelector && len(ap.GetTargetRefs()) > 0:
		fail("sets both selector and targetRefs; Istio refuses that: selector for sidecars, targetRefs for waypoints")
	case !bySelector && len(ap.GetTargetRefs()) == 0:
		fail("has neither a selector with matchLabels nor targetRefs: it would apply to every workload of namespace %q", d.namespace())
	}
	for i, r := range ap.GetTargetRefs() {
		kind := r.GetKind() + "/" + r.GetGroup()
		switch kind {
		case "Service/", "Service/core", "Gateway/gateway.networking.k8s.io":
		default:
			fail("targetRefs[%d]: kind %q with group %q; target a Service (group \"\") or a waypoint Gateway (group gateway.networking.k8s.io)", i, r.GetKind(), r.GetGroup())
		}
		if r.GetName() == "" {
			fail("targetRefs[%d]: name is not set", i)
		}
		if ns := r.GetNamespace(); ns != "" && ns != d.namespace() {
			fail("targetRefs[%d]: namespace %q; a policy can target only its own namespace %q", i, ns, d.namespace())
		}
	}
	return errs
}

// networkPolicyAssertions checks that ingress to the namespace is denied by
// default and that the server's ports are open only to labelled clients
// (both ports) and to one other label-selected peer (Prometheus, port 9002).
func networkPolicyAssertions(server *appsv1.Deployment, c *corev1.Container, netpols []*networkingv1.NetworkPolicy) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	podLabels := labels.Set(server.Spec.Template.Labels)

	defaultDeny := false
	grants := map[int32]map[string]bool{} // port → "client", "other"
	for _, np := range netpols {
		if np.Namespace != server.Namespace {
			continue
		}
		at := fmt.Sprintf("NetworkPolicy %q", np.Name)
		ingress := len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			fail("%s: podSelector: %v", at, err)
			continue
		}
		if sel.Empty() && ingress && len(np.Spec.Ingress) == 0 {
			defaultDeny = true
		}
		if !ingress || !sel.Matches(podLabels) {
			continue
		}
		for i, r := range np.Spec.Ingress {
			rat := fmt.Sprintf("%s: ingress[%d]", at, i)
			if len(r.From) == 0 {
				fail("%s has no from: it admits every source", rat)
			}
			if len(r.Ports) == 0 {
				fail("%s has no ports: it opens every port", rat)
			}
			var ports []int32
			for j, p := range r.Ports {
				n := policyPort(c, p)
				switch {
				case p.EndPort != nil:
					fail("%s.ports[%d]: a port range; open only %d and %d", rat, j, grpcPort, httpPort)
				case p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP:
					fail("%s.ports[%d]: protocol %s; keygate serves TCP", rat, j, *p.Protocol)
				case n != grpcPort && n != httpPort:
					fail("%s.ports[%d] (%v) is not keygate's gRPC (%d) or HTTP (%d) port", rat, j, p.Port, grpcPort, httpPort)
				default:
					ports = append(ports, n)
				}
			}
			for j, peer := range r.From {
				kind := "other"
				switch {
				case peer.IPBlock != nil:
					fail("%s.from[%d]: an ipBlock; keygate's clients are pods, selected by label", rat, j)
					continue
				case isClientPeer(peer):
					kind = "client"
				case !labelRestricted(peer.NamespaceSelector) || !labelRestricted(peer.PodSelector):
					fail("%s.from[%d] must select both namespaces and pods by label", rat, j)
					continue
				case slices.Contains(ports, grpcPort):
					fail("%s.from[%d] reaches the gRPC port %d without the %s label on namespace and pod", rat, j, grpcPort, clientLabel)
					continue
				}
				for _, n := range ports {
					if grants[n] == nil {
						grants[n] = map[string]bool{}
					}
					grants[n][kind] = true
				}
			}
		}
	}
	if !defaultDeny {
		fail("no NetworkPolicy in namespace %q denies ingress by default (podSelector {}, policyTypes [Ingress], no rules)", server.Namespace)
	}
	for _, n := range []int32{grpcPort, httpPort} {
		if !grants[n]["client"] {
			fail("no NetworkPolicy lets pods labelled %s=true (in namespaces labelled so) reach port %d", clientLabel, n)
		}
	}
	if !grants[httpPort]["other"] {
		fail("no NetworkPolicy lets Prometheus reach port %d (/metrics)", httpPort)
	}
	return errs
}

// isClientPeer reports whether a peer is "pods labelled clientLabel=true in
// namespaces labelled clientLabel=true".
func isClientPeer(p networkingv1.NetworkPolicyPeer) bool {
	return p.NamespaceSelector != nil && p.PodSelector != nil &&
		p.NamespaceSelector.MatchLabels[clientLabel] == "true" && p.PodSelector.MatchLabels[clientLabel] == "true"
}

// labelRestricted reports whether a selector is set and selects by label
// (nil selects nothing of that kind, {} everything).
func labelRestricted(s *metav1.LabelSelector) bool {
	return s != nil && (len(s.MatchLabels) > 0 || len(s.MatchExpressions) > 0)
}

// policyPort resolves a NetworkPolicy port (number or container port name)
// against the container, or returns 0.
func policyPort(c *corev1.Container, p networkingv1.NetworkPolicyPort) int32 {
	switch {
	case p.Port == nil:
		return 0
	case p.Port.Type == intstr.Int:
		return p.Port.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.Port.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func typedContainer(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// setting returns the value of a keygate flag as the container sets it:
// on the command line (--flag value, --flag=value; a bare boolean flag is
// "true"), else in the environment (KEYGATE_FLAG), which the command line
// overrides.
func setting(c *corev1.Container, flag string) (string, bool) {
	args := append(slices.Clip(c.Command), c.Args...)
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+flag+"="); ok {
			return v, true
		}
		if a == "--"+flag {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				return args[i+1], true
			}
			return "true", true
		}
	}
	env := "KEYGATE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	for _, e := range c.Env {
		if e.Name == env {
			return e.Value, e.Value != ""
		}
	}
	return "", false
}

func durationSetting(c *corev1.Container, flag string, def time.Duration) (time.Duration, error) {
	v, ok := setting(c, flag)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, fmt.Errorf("--%s %q: %v", flag, v, err)
	}
	return d, nil
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
		if cmd := strs(get(p, "exec", "command")); len(cmd) > 0 {
			if len(cmd) < 2 || filepath.Base(cmd[0]) != "keygate" || cmd[1] != "health" {
				fail("%s: exec %v is not `keygate health`", probeName, cmd)
			} else if want != readinessPath {
				fail("%s: `keygate health` reports NOT_SERVING while PostgreSQL is unreachable, like %s; want %s", probeName, readinessPath, want)
			}
			continue
		}
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

// ingressRule returns ingress rule i of the keygate-server NetworkPolicy.
func ingressRule(tb testing.TB, docs []manifest, i int) map[string]any {
	tb.Helper()
	return dig(tb, find(tb, docs, "NetworkPolicy", "keygate-server"), "spec", "ingress", i).(map[string]any)
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

// shippedYAML lists the repository's YAML files.
func shippedYAML(tb testing.TB) []string {
	tb.Helper()
	return repofiles.YAML(tb, "..")
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
