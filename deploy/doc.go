// Package deploy holds keygate's deployment manifests and the test that
// checks them.
//
// kubernetes/keygate.yaml runs keygate on Kubernetes: namespace, service
// account, the database Secret (a placeholder), a migration Job, the
// Deployment with its probes, drain and hardening, NetworkPolicies (ingress
// denied by default; keygate's ports open to pods and namespaces labelled
// keygate.io/client=true, /metrics to Prometheus), a PodDisruptionBudget,
// and two Services (ClusterIP for Istio, headless for a standalone Envoy).
// istio/mesh-config.yaml registers keygate as an Istio ext_authz provider;
// istio/authorization-policy.yaml sends a workload's requests through it
// (sidecars, by selector) and istio/authorization-policy-ambient.yaml does
// the same for ambient mode's waypoints (by targetRefs).
//
// For HTTP forward-auth (keygate's --http-addr), nginx/keygate.conf.template
// is a server block for nginx's auth_request, caddy/Caddyfile uses Caddy's
// forward_auth, and traefik/dynamic.yml is a Traefik dynamic configuration
// with a forwardAuth middleware. The first two are tested through the real
// proxies by the test package (test/forwardauth_test.go); Traefik cannot be
// installed here, so traefik_test.go checks its file structurally (strict
// decoding into Traefik's field names, the middleware order, that every
// client-sent identity header and every spelling of the key is removed),
// with negative cases. caddy_test.go also checks the Caddyfile without a
// Caddy: its request_header deletions, applied as Caddy applies them, must
// remove every header name with a byte other than a letter, a digit or '-'
// (backends read such names loosely) before forward_auth.
//
// ratelimit/ is the per-key rate limit recipe: envoy.yaml is envoy/envoy.yaml
// plus Envoy's rate limit filter, whose route actions build a descriptor
// from the key's tier and id in keygate's dynamic metadata, and config.yaml
// is envoyproxy/ratelimit's configuration with a budget per key and tier;
// envoy/ratelimit_test.go checks both, and them together.
//
// deploy_test.go decodes every document of kubernetes/ and istio/ strictly
// into its real type (k8s.io/api through apimachinery's strict decoder;
// Istio specs into istio.io/api messages, the IstioOperator overlay's
// meshConfig as MeshConfig), so an unknown, misspelt or wrongly cased field
// fails. It then checks what a typo or an edit would silently break:
// identity fields, that probes hit keygate's real endpoints on the right
// port (and that readiness does not depend on the database), the shutdown
// budget (grace period against preStop, drain delay and shutdown timeout),
// no hard-coded GOMEMLIMIT and no gRPC reflection, one image for migration
// and server, the NetworkPolicies, the gRPC port naming Istio needs, that
// the Istio provider points at the Service's gRPC port with a bounded
// timeout and fails closed, the non-root hardening, that every CUSTOM
// policy exempts only health paths and targets workloads by either selector
// or targetRefs. It also refuses a repeated key, at any depth, in every
// YAML file the repository ships (git ls-files). Negative cases mutate the
// manifests and require each check to fail.
//
// The package has no Go API; it exists for the files and their test.
package deploy
