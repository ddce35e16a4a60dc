package envoy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ext_authzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	yaml3 "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/repofiles"

	// Every extension envoy.yaml names by @type must be linked in, or its
	// google.protobuf.Any cannot be resolved. The ones also used by name are
	// imported above; these are used only through their Any.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
)

// configFile is the reference configuration under test.
const configFile = "envoy.yaml"

// Names envoy.yaml must use. The ext_authz filter name is also the dynamic
// metadata namespace keygate's metadata lands in.
const (
	extAuthzFilter = "envoy.filters.http.ext_authz"
	http2Options   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	maxTimeout     = 250 * time.Millisecond
)

// policyModules is keygate's example policy (DESIGN.md section 5): each path
// prefix and the module an Envoy route must tag it with. Keep it identical to
// the policy file and to envoy.yaml.
var policyModules = map[string]string{
	"/api/v1/accounts": "accounts",
	"/api/v1/users":    "users",
	"/api/v1/auth":     "authentication",
	"/api/v1/api-keys": "authentication",
	"/api/v1/projects": "projects",
}

// publicPaths are the only paths a route may exempt from the check.
var publicPaths = []string{"/healthz", "/readyz", "/livez"}

// publicStrip are the headers a route that skips the check must remove:
// keygate's identity headers (a client could forge them) and the headers
// keygate reads the key from by default (no check removes it there).
var publicStrip = []string{
	"x-keygate-key-id", "x-keygate-account-id", "x-keygate-scopes", "x-keygate-module", "x-keygate-dry-run",
	"x-api-key", "authorization",
}

// Route classes reported by routeFor besides a module name.
const (
	routePublic  = "(public)"   // ext_authz disabled
	routeChecked = "(checked)"  // checked, no module: keygate's path table decides
	routeNone    = "(no route)" // Envoy answers 404 without a check
)

// routingCases are requests and the route class envoy.yaml must give them,
// found by replaying Envoy's first-match route selection. Paths here are
// already canonical (Envoy normalizes before it routes).
var routingCases = []struct {
	path string
	want string
}{
	{"/healthz", routePublic},
	{"/healthz?verbose=1", routePublic},
	{"/healthz/extra", routeChecked},
	{"/HEALTHZ", routeChecked},
	{"/api/v1/accounts", "accounts"},
	{"/api/v1/accounts/", "accounts"},
	{"/api/v1/accounts/9?expand=owner", "accounts"},
	{"/api/v1/users", "users"},
	{"/api/v1/users/42", "users"},
	{"/API/V1/Users/42", "users"},
	{"/api/v1/usersettings", routeChecked},
	{"/api/v1/auth", "authentication"},
	{"/api/v1/auth/login", "authentication"},
	{"/api/v1/authors", routeChecked},
	{"/api/v1/api-keys", "authentication"},
	{"/api/v1/api-keys/kg_1/rotate", "authentication"},
	{"/api/v1/projects", "projects"},
	{"/api/v1/projects/7/users", "projects"},
	{"/api/v1/administrator", routeChecked},
	{"/api/v2/users", routeChecked},
	{"/", routeChecked},
	{"/favicon.ico", routeChecked},
}

func TestConfig(t *testing.T) {
	doc, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(doc); err != nil {
		t.Fatalf("%s does not pass the check:\n%v", configFile, err)
	}
}

// TestConfigRouting prints the route class of each routing case, so a
// failure names the paths that go astray rather than only the first.
func TestConfigRouting(t *testing.T) {
	bs, err := load(mustRead(t, configFile))
	if err != nil {
		t.Fatal(err)
	}
	vh := mustVirtualHost(t, bs)
	for _, tc := range routingCases {
		t.Run(tc.path, func(t *testing.T) {
			got, err := routeFor(vh, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("route for %s: got %s, want %s", tc.path, got, tc.want)
			}
		})
	}
}

// TestCheckFails proves the check can fail: each case breaks envoy.yaml in
// one way and requires check to reject it with a message naming the problem.
func TestCheckFails(t *testing.T) {
	hcm := []any{"static_resources", "listeners", 0, "filter_chains", 0, "filters", named("envoy.filters.network.http_connection_manager"), "typed_config"}
	extAuthz := join(hcm, "http_filters", named(extAuthzFilter), "typed_config")
	routes := join(hcm, "route_config", "virtual_hosts", 0, "routes")
	usersRoute := join(routes, named("module-users"))
	keygate := []any{"static_resources", "clusters", named("keygate")}
	accessLog := join(hcm, "access_log", 0, "typed_config", "log_format", "json_format")

	tests := []struct {
		name   string
		mutate func(tb testing.TB, doc map[string]any)
		want   string
	}{
		// Caught while decoding (protojson): unknown fields, bad enums, types
		// that do not resolve.
		{"typo in a top-level field", func(tb testing.TB, doc map[string]any) {
			rename(tb, doc, nil, "static_resources", "static_resource")
		}, `unknown field "static_resource"`},
		{"typo in a field inside typed_config", func(tb testing.TB, doc map[string]any) {
			rename(tb, doc, extAuthz, "failure_mode_allow", "failure_mode_alow")
		}, `unknown field "failure_mode_alow"`},
		{"invalid enum value", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, hcm, "path_with_escaped_slashes_action", "REJECT")
		}, "invalid value for enum"},
		{"typed_config of an unknown type", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, extAuthz, "@type", "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthZ")
		}, "ExtAuthZ"},

		// Caught by the generated validation rules, outside and inside Any.
		{"rule violated in the bootstrap", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, keygate, "connect_timeout", "0s")
		}, "ConnectTimeout"},
		{"rule violated inside typed_config", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(usersRoute, "match"), "path_separated_prefix", "/api/v1/users/")
		}, "PathSeparatedPrefix"},
		{"deprecated field", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, keygate, "dns_refresh_rate", "5s")
		}, "deprecated"},

		// Caught by the assertions.
		{"ext_authz cluster missing", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(extAuthz, "grpc_service", "envoy_grpc"), "cluster_name", "keygate-typo")
		}, `unknown cluster "keygate-typo"`},
		{"route cluster missing", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(routes, named("catch-all"), "route"), "cluster", "apii")
		}, `unknown cluster "apii"`},
		{"path overrides reach the upstream", func(tb testing.TB, doc map[string]any) {
			vh := object(tb, doc, join(hcm, "route_config", "virtual_hosts", 0))
			vh["request_headers_to_remove"] = slices.DeleteFunc(slices.Clone(vh["request_headers_to_remove"].([]any)), func(h any) bool { return h == "x-rewrite-url" })
		}, "does not remove x-rewrite-url"},
		{"duplicate cluster", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, []any{"static_resources", "clusters", named("api")}, "name", "keygate")
		}, `cluster "keygate" is defined twice`},
		{"router not last", func(tb testing.TB, doc map[string]any) {
			filters := dig(tb, doc, join(hcm, "http_filters")...).([]any)
			filters[0], filters[1] = filters[1], filters[0]
		}, "last HTTP filter"},
		{"no ext_authz filter", func(tb testing.TB, doc map[string]any) {
			m := dig(tb, doc, hcm...).(map[string]any)
			m["http_filters"] = m["http_filters"].([]any)[1:]
		}, "no ext_authz filter"},
		{"fail open", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, extAuthz, "failure_mode_allow", true)
		}, "failure_mode_allow"},
		{"no timeout", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(extAuthz, "grpc_service"), "timeout")
		}, "timeout"},
		{"timeout too long", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(extAuthz, "grpc_service"), "timeout", "1s")
		}, "timeout"},
		{"transport API version not set", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, extAuthz, "transport_api_version")
		}, "transport_api_version"},
		{"status_on_error not set", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, extAuthz, "status_on_error")
		}, "status_on_error"},
		{"HTTP service instead of gRPC", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, extAuthz, "grpc_service")
			set(tb, doc, extAuthz, "http_service", map[string]any{
				"server_uri": map[string]any{"uri": "http://keygate:9002", "cluster": "keygate", "timeout": "0.2s"},
			})
		}, "grpc_service"},
		{"keygate cluster not HTTP/2", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, keygate, "typed_extension_protocol_options")
		}, "HTTP/2"},
		{"keygate cluster without gRPC health check", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, keygate, "health_checks")
		}, "health check"},
		{"per-route config for a filter not in the chain", func(tb testing.TB, doc map[string]any) {
			rename(tb, doc, join(usersRoute, "typed_per_filter_config"), extAuthzFilter, "envoy.filters.http.extauthz")
		}, "not in the HTTP filter chain"},
		{"module route without context extensions", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, usersRoute, "typed_per_filter_config")
		}, "module users"},
		{"module route with the wrong module", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(usersRoute, "typed_per_filter_config", extAuthzFilter, "check_settings", "context_extensions"), "module", "user")
		}, `"user"`},
		{"module route matching case-sensitively", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(usersRoute, "match"), "case_sensitive")
		}, "case_sensitive"},
		{"module route with a plain prefix", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(usersRoute, "match"), "path_separated_prefix")
			set(tb, doc, join(usersRoute, "match"), "prefix", "/api/v1/users")
		}, "path_separated_prefix"},
		{"public route still checked", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(routes, named("public-healthz")), "typed_per_filter_config")
		}, "/healthz"},
		{"non-health route disables ext_authz", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(routes, named("catch-all")), "typed_per_filter_config", map[string]any{
				extAuthzFilter: map[string]any{
					"@type":    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
					"disabled": true,
				},
			})
		}, "disables ext_authz"},
		{"no catch-all route", func(tb testing.TB, doc map[string]any) {
			m := dig(tb, doc, join(hcm, "route_config", "virtual_hosts", 0)...).(map[string]any)
			r := m["routes"].([]any)
			m["routes"] = r[:len(r)-1]
		}, "catch-all"},
		{"route shadowing the module routes", func(tb testing.TB, doc map[string]any) {
			m := dig(tb, doc, join(hcm, "route_config", "virtual_hosts", 0)...).(map[string]any)
			shadow := map[string]any{"match": map[string]any{"prefix": "/api"}, "route": map[string]any{"cluster": "api"}}
			m["routes"] = slices.Insert(m["routes"].([]any), 1, any(shadow))
		}, "/api/v1/users"},
		{"normalize_path off", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, hcm, "normalize_path", false)
		}, "normalize_path"},
		{"merge_slashes off", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, hcm, "merge_slashes", false)
		}, "merge_slashes"},
		{"escaped slashes kept", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, hcm, "path_with_escaped_slashes_action", "KEEP_UNCHANGED")
		}, "path_with_escaped_slashes_action"},
		{"headers with underscores allowed", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(hcm, "common_http_protocol_options"), "headers_with_underscores_action", "ALLOW")
		}, "headers_with_underscores_action"},
		{"access log writes the API key", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "key", "%REQ(X-API-KEY)%")
		}, "x-api-key"},
		{"access log without key_id", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, accessLog, "key_id")
		}, "key_id"},
		{"access log with an unknown operator", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "status", "%RESPONSE_COD%")
		}, "Envoy has no command operator RESPONSE_COD"},
		{"access log operator with an argument Envoy refuses", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "path", "%PATH(NQ:ORIGINAL)%")
		}, `"ORIGINAL" is not one of`},
		{"access log with a stray percent", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "note", "100%")
		}, "starts no command operator"},
		{"access log path by :path", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "path", "%REQ(:PATH)%")
		}, "with its query string"},
		{"access log path by the original path header", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%")
		}, "with its query string"},
		{"access log path with the query (PATH's default)", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "path", "%PATH%")
		}, "with its query string"},
		{"access log without the path", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, accessLog, "path")
		}, "does not log the path"},
		{"access log with a query parameter", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "page", "%QUERY_PARAM(page)%")
		}, "logs a query parameter"},
		{"access log with a CEL expression", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "url", "%CEL(request.path)%")
		}, "cannot see through it"},
		{"access log with a cookie", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, accessLog, "session", "%REQ(COOKIE)%")
		}, "cookie header"},
		{"public route keeps the bearer credential", func(tb testing.TB, doc map[string]any) {
			r := object(tb, doc, join(routes, named("public-healthz")))
			r["request_headers_to_remove"] = slices.DeleteFunc(slices.Clone(r["request_headers_to_remove"].([]any)), func(h any) bool { return h == "authorization" })
		}, "does not remove authorization"},
		{"public route keeps a forged dry-run header", func(tb testing.TB, doc map[string]any) {
			r := object(tb, doc, join(routes, named("public-healthz")))
			r["request_headers_to_remove"] = slices.DeleteFunc(slices.Clone(r["request_headers_to_remove"].([]any)), func(h any) bool { return h == "x-keygate-dry-run" })
		}, "does not remove x-keygate-dry-run"},
		{"merged headers sent to keygate", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, extAuthz, "encode_raw_headers")
		}, "encode_raw_headers"},
		{"no outlier detection", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, keygate, "outlier_detection")
		}, "has no outlier_detection"},
		{"outlier detection mixing failures and answers", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(keygate, "outlier_detection"), "split_external_local_origin_errors")
		}, "split_external_local_origin_errors"},
		{"outlier detection not enforced", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(keygate, "outlier_detection"), "enforcing_consecutive_local_origin_failure", 0)
		}, "never be ejected"},
		{"outlier detection ejecting every replica", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(keygate, "outlier_detection"), "max_ejection_percent", 100)
		}, "max_ejection_percent"},
		{"Check retried", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(extAuthz, "grpc_service"), "retry_policy", map[string]any{"num_retries": 2})
		}, "grpc_service retries"},
		{"admin reachable from outside", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, []any{"admin", "address", "socket_address"}, "address", "0.0.0.0")
		}, "admin"},
	}

	base := mustRead(t, configFile)
	// The harness itself must not break the file: the round trip through the
	// generic tree has to pass unchanged.
	if err := check(mustJSON(t, mustTree(t, base))); err != nil {
		t.Fatalf("unmodified %s fails after the round trip: %v", configFile, err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := mustTree(t, base)
			tc.mutate(t, doc)
			err := check(mustJSON(t, doc))
			if err == nil {
				t.Fatalf("check passed; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// flavour is what a shipped configuration is checked as: Envoy asking
// keygate over gRPC (envoy.yaml) or over HTTP (envoy-http.yaml,
// envoy_http_test.go).
type flavour struct {
	file string
	// metadata are the keys of ext_authz's dynamic metadata the access log
	// must read (the identity keygate returns).
	metadata []string
	// authz checks the ext_authz filter's service settings.
	authz func(where string, a *ext_authzv3.ExtAuthz, clusters map[string]*clusterv3.Cluster) []error
	// moduleRoutes: module routes tag the Check with
	// context_extensions.module (gRPC mode only; in HTTP mode keygate's own
	// path table decides the module).
	moduleRoutes bool
}

// grpcConfig is envoy.yaml's flavour.
var grpcConfig = &flavour{file: configFile, metadata: []string{"key_id", "account_id"}, authz: extAuthzAssertions, moduleRoutes: true}

// check loads an Envoy bootstrap (YAML or JSON) in envoy.yaml's flavour and
// returns every problem found, or nil.
func check(doc []byte) error { return checkAs(grpcConfig, doc) }

// checkAs loads an Envoy bootstrap and returns every problem found for
// flavour f, or nil.
func checkAs(f *flavour, doc []byte) error {
	bs, err := load(doc)
	if err != nil {
		return err
	}
	return errors.Join(assertions(bs, f)...)
}

// load decodes doc the way Envoy does (unknown fields and unresolvable types
// fail), applies the generated validation rules to the bootstrap and to the
// content of every google.protobuf.Any, and rejects deprecated fields and
// enum values.
func load(doc []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	bs := new(bootstrapv3.Bootstrap)
	if err := protojson.Unmarshal(js, bs); err != nil {
		return nil, fmt.Errorf("decode bootstrap: %w", err)
	}
	var errs []error
	if err := bs.ValidateAll(); err != nil {
		errs = append(errs, fmt.Errorf("bootstrap: %w", err))
	}
	errs = append(errs, walk("bootstrap", bs.ProtoReflect(), func(path string, m protoreflect.Message) []error {
		return deprecations(path, m)
	})...)
	return bs, errors.Join(errs...)
}

// walk calls visit for m and every message below it, and unpacks every
// google.protobuf.Any on the way: the generated validators stop at an Any, so
// walk validates each unpacked message itself before descending into it.
func walk(path string, m protoreflect.Message, visit func(path string, m protoreflect.Message) []error) []error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return []error{fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)}
		}
		path = fmt.Sprintf("%s<%s>", path, inner.ProtoReflect().Descriptor().FullName())
		var errs []error
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
			}
		}
		return append(errs, walk(path, inner.ProtoReflect(), visit)...)
	}
	errs := visit(path, m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, walk(fmt.Sprintf("%s[%q]", p, k.String()), mv.Message(), visit)...)
				return true
			})
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			for i := range v.List().Len() {
				errs = append(errs, walk(fmt.Sprintf("%s[%d]", p, i), v.List().Get(i).Message(), visit)...)
			}
		case fd.Message() != nil:
			errs = append(errs, walk(p, v.Message(), visit)...)
		}
		return true
	})
	return errs
}

// deprecations reports the deprecated fields and enum values set in m (not
// below it). Envoy warns about them today and refuses them in a later
// release.
func deprecations(path string, m protoreflect.Message) []error {
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			errs = append(errs, fmt.Errorf("%s.%s is deprecated", path, fd.Name()))
		}
		if fd.Kind() == protoreflect.EnumKind && !fd.IsList() && !fd.IsMap() {
			ev := fd.Enum().Values().ByNumber(v.Enum())
			if ev != nil {
				if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
					errs = append(errs, fmt.Errorf("%s.%s: value %s is deprecated", path, fd.Name(), ev.Name()))
				}
			}
		}
		return true
	})
	return errs
}

// clusterRefs are the string fields that name a cluster, by full field name.
var clusterRefs = map[protoreflect.FullName]bool{
	"envoy.config.route.v3.RouteAction.cluster":                     true,
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy.cluster": true,
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.name":      true,
	"envoy.config.core.v3.GrpcService.EnvoyGrpc.cluster_name":       true,
	"envoy.config.core.v3.HttpUri.cluster":                          true,
	"envoy.config.endpoint.v3.ClusterLoadAssignment.cluster_name":   true,
}

func TestClusterRefsExist(t *testing.T) {
	// A misspelled name in clusterRefs would silently check nothing.
	for name := range clusterRefs {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Errorf("clusterRefs: %s: %v", name, err)
			continue
		}
		if fd, ok := d.(protoreflect.FieldDescriptor); !ok || fd.Kind() != protoreflect.StringKind {
			t.Errorf("clusterRefs: %s is not a string field", name)
		}
	}
}

// assertions checks what the validation rules cannot see. Each problem is one
// error; the messages name the setting.
func assertions(bs *bootstrapv3.Bootstrap, fl *flavour) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// Admin stays on loopback.
	if addr := bs.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); addr != "" && addr != "127.0.0.1" && addr != "::1" {
		fail("admin listens on %q; keep it on 127.0.0.1", addr)
	}

	// Clusters: unique names, and every reference resolves.
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		if _, dup := clusters[c.GetName()]; dup {
			fail("cluster %q is defined twice", c.GetName())
		}
		clusters[c.GetName()] = c
	}
	errs = append(errs, walk("bootstrap", bs.ProtoReflect(), func(path string, m protoreflect.Message) []error {
		var errs []error
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if clusterRefs[fd.FullName()] {
				if _, ok := clusters[v.String()]; !ok {
					errs = append(errs, fmt.Errorf("%s.%s: unknown cluster %q", path, fd.Name(), v.String()))
				}
			}
			return true
		})
		return errs
	})...)

	var managers int
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm, err := unpack[*hcmv3.HttpConnectionManager](f.GetTypedConfig())
				if err != nil {
					continue // not an HTTP connection manager
				}
				managers++
				errs = append(errs, hcmAssertions(fmt.Sprintf("listener %q", l.GetName()), hcm, clusters, fl)...)
			}
		}
	}
	if managers == 0 {
		fail("no HTTP connection manager in any listener")
	}
	return errs
}

// hcmAssertions checks one HTTP connection manager: path handling, the filter
// chain, the ext_authz settings, the access log and the route table.
func hcmAssertions(where string, hcm *hcmv3.HttpConnectionManager, clusters map[string]*clusterv3.Cluster, f *flavour) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": "+format, args...))
	}

	// Path canonicalization and header ambiguity.
	if !hcm.GetNormalizePath().GetValue() {
		fail("normalize_path must be true")
	}
	if !hcm.GetMergeSlashes() {
		fail("merge_slashes must be true")
	}
	switch a := hcm.GetPathWithEscapedSlashesAction(); a {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
	default:
		fail("path_with_escaped_slashes_action is %s; want REJECT_REQUEST or UNESCAPE_AND_REDIRECT", a)
	}
	if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
		fail("common_http_protocol_options.headers_with_underscores_action is %s; want REJECT_REQUEST", a)
	}

	// The filter chain: unique names, ext_authz present, router last.
	filters := hcm.GetHttpFilters()
	names := map[string]bool{}
	var authz *ext_authzv3.ExtAuthz
	for _, f := range filters {
		if names[f.GetName()] {
			fail("HTTP filter %q appears twice", f.GetName())
		}
		names[f.GetName()] = true
		if a, err := unpack[*ext_authzv3.ExtAuthz](f.GetTypedConfig()); err == nil {
			if authz != nil {
				fail("more than one ext_authz filter")
			}
			authz = a
			if f.GetName() != extAuthzFilter {
				fail("ext_authz filter is named %q; name it %q (routes and the metadata namespace use that name)", f.GetName(), extAuthzFilter)
			}
		}
	}
	if n := len(filters); n == 0 {
		fail("no HTTP filters")
	} else if _, err := unpack[*routerv3.Router](filters[n-1].GetTypedConfig()); err != nil {
		fail("the last HTTP filter is %q; the router must be the last HTTP filter", filters[n-1].GetName())
	}
	if authz == nil {
		fail("no ext_authz filter")
	} else {
		errs = append(errs, f.authz(where, authz, clusters)...)
	}

	// Access log: identity from keygate's metadata, never the credential.
	if len(hcm.GetAccessLog()) == 0 {
		fail("no access log")
	}
	for i, al := range hcm.GetAccessLog() {
		js, err := protojson.Marshal(al)
		if err != nil {
			fail("access_log[%d]: %v", i, err)
			continue
		}
		text := strings.ToLower(string(js))
		for _, key := range f.metadata {
			if !strings.Contains(text, strings.ToLower("%DYNAMIC_METADATA("+extAuthzFilter+":"+key+")%")) {
				fail("access_log[%d] does not log %%DYNAMIC_METADATA(%s:%s)%%", i, extAuthzFilter, key)
			}
		}
		for _, secret := range []string{"x-api-key", "authorization"} {
			if strings.Contains(text, secret) {
				fail("access_log[%d] mentions %s: the API key must never be logged", i, secret)
			}
		}
		// Every command operator is one Envoy knows, none writes the query
		// string or a credential, and the path is logged without its query.
		var tree any
		if err := json.Unmarshal(js, &tree); err != nil {
			fail("access_log[%d]: %v", i, err)
			continue
		}
		logsPath := false
		for _, format := range formatStrings(tree) {
			ops, ferrs := checkFormat(format)
			for _, err := range ferrs {
				fail("access_log[%d]: %v", i, err)
			}
			for _, op := range ops {
				if x, _, _ := strings.Cut(op.arg, ":"); op.name == "PATH" && x == "NQ" {
					logsPath = true
				}
			}
		}
		if !logsPath {
			fail("access_log[%d] does not log the path without its query string (%%PATH(NQ:ORIG_OR_PATH)%%)", i)
		}
	}

	// Routes.
	rc := hcm.GetRouteConfig()
	if rc == nil {
		fail("route_config must be inline (RDS cannot be checked here)")
		return errs
	}
	for _, vh := range rc.GetVirtualHosts() {
		errs = append(errs, routeAssertions(fmt.Sprintf("%s: virtual host %q", where, vh.GetName()), vh, names, f)...)
	}
	vh := wildcardHost(rc)
	if vh == nil {
		fail(`no virtual host for domain "*"`)
		return errs
	}
	for _, tc := range routingCases {
		got, err := routeFor(vh, tc.path)
		if err != nil {
			fail("%v", err)
			break
		}
		if want := f.wantRoute(tc.want); got != want {
			fail("request %s gets route %s; want %s", tc.path, got, want)
		}
	}
	return errs
}

// extAuthzAssertions checks the ext_authz filter: gRPC v3 to an HTTP/2 cluster
// with gRPC health checking, fail closed with 503, bounded timeout.
func extAuthzAssertions(where string, a *ext_authzv3.ExtAuthz, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": ext_authz: "+format, args...))
	}
	errs = append(errs, failClosedAssertions(where, a)...)
	gs := a.GetGrpcService()
	if gs == nil {
		fail("grpc_service is not set (keygate's ext_authz listener is gRPC)")
		return errs
	}
	switch d := gs.GetTimeout(); {
	case d == nil:
		fail("grpc_service.timeout is not set")
	case d.AsDuration() <= 0 || d.AsDuration() > maxTimeout:
		fail("grpc_service.timeout is %v; want more than 0 and at most %v", d.AsDuration(), maxTimeout)
	}
	name := gs.GetEnvoyGrpc().GetClusterName()
	if name == "" {
		fail("grpc_service must use envoy_grpc with a cluster_name")
		return errs
	}
	c, ok := clusters[name]
	if !ok {
		return errs // reported as an unknown cluster
	}
	opts, err := unpack[*upstreamhttpv3.HttpProtocolOptions](c.GetTypedExtensionProtocolOptions()[http2Options])
	if err != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		fail("cluster %q must speak HTTP/2: typed_extension_protocol_options[%q].explicit_http_config.http2_protocol_options", name, http2Options)
	}
	if !slices.ContainsFunc(c.GetHealthChecks(), func(h *corev3.HealthCheck) bool { return h.GetGrpcHealthCheck() != nil }) {
		fail("cluster %q has no gRPC health check (grpc.health.v1.Health)", name)
	}
	if gs.GetRetryPolicy() != nil || gs.GetEnvoyGrpc().GetRetryPolicy() != nil {
		fail("grpc_service retries: a retry cannot fit in the Check's timeout after a timeout, and multiplies load; eject broken replicas with outlier_detection instead")
	}
	errs = append(errs, outlierAssertions(where, name, c, false)...)
	return errs
}

// outlierAssertions checks the authorization cluster's passive health
// checking: replicas that cannot be reached are ejected (locally
// originated failures, counted apart from answers), never more than half
// of them; over HTTP, keygate's own 5xx answers (503 during a database
// outage) never eject.
func outlierAssertions(where, name string, c *clusterv3.Cluster, httpMode bool) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": cluster %q: outlier_detection: "+format, append([]any{name}, args...)...))
	}
	od := c.GetOutlierDetection()
	if od == nil {
		return []error{fmt.Errorf("%s: cluster %q has no outlier_detection: a replica that stops answering keeps getting Checks until the health check notices", where, name)}
	}
	if !od.GetSplitExternalLocalOriginErrors() {
		fail("split_external_local_origin_errors must be true: count unreachable replicas apart from keygate's answers")
	}
	if n := od.GetConsecutiveLocalOriginFailure(); n != nil && (n.GetValue() == 0 || n.GetValue() > 5) {
		fail("consecutive_local_origin_failure is %d; want 1 to 5", n.GetValue())
	}
	if e := od.GetEnforcingConsecutiveLocalOriginFailure(); e != nil && e.GetValue() == 0 {
		fail("enforcing_consecutive_local_origin_failure is 0: unreachable replicas would never be ejected")
	}
	if m := od.GetMaxEjectionPercent(); m == nil || m.GetValue() > 50 {
		fail("max_ejection_percent must be set, at most 50 (never eject most replicas)")
	}
	if httpMode {
		// Envoy enforces consecutive 5xx and success rate unless told not
		// to (100 by default), gateway failures and failure percentage not.
		for _, e := range []struct {
			field     string
			v         *wrapperspb.UInt32Value
			defaultOn bool
		}{
			{"enforcing_consecutive_5xx", od.GetEnforcingConsecutive_5Xx(), true},
			{"enforcing_success_rate", od.GetEnforcingSuccessRate(), true},
			{"enforcing_consecutive_gateway_failure", od.GetEnforcingConsecutiveGatewayFailure(), false},
			{"enforcing_failure_percentage", od.GetEnforcingFailurePercentage(), false},
		} {
			if e.v != nil && e.v.GetValue() != 0 || e.v == nil && e.defaultOn {
				fail("%s must be 0: over HTTP keygate's own 503 (database unreachable) is a 5xx answer, not a broken replica", e.field)
			}
		}
	}
	return errs
}

// failClosedAssertions checks what every ext_authz filter needs: fail
// closed, with 503, on the v3 API.
func failClosedAssertions(where string, a *ext_authzv3.ExtAuthz) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": ext_authz: "+format, args...))
	}
	if a.GetFailureModeAllow() {
		fail("failure_mode_allow must be false (fail closed)")
	}
	if v := a.GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
		fail("transport_api_version is %s; want V3", v)
	}
	if got := a.GetStatusOnError().GetCode(); got != typev3.StatusCode_ServiceUnavailable {
		fail("status_on_error is %v; want 503 (ServiceUnavailable)", got)
	}
	if !a.GetEncodeRawHeaders() {
		fail("encode_raw_headers must be true: keygate should judge the headers as the client sent them (repeated ones unmerged)")
	}
	return errs
}

// wantRoute is the route class a routing case expects in flavour f: without
// module routes, module paths go to the checked catch-all.
func (f *flavour) wantRoute(want string) string {
	if !f.moduleRoutes && want != routePublic && want != routeChecked && want != routeNone {
		return routeChecked
	}
	return want
}

// routeAssertions checks one virtual host's routes: per-route configs name
// filters in the chain; only health paths skip the check; every module route
// is a case-insensitive whole-segment prefix tagged with its policy module;
// every policy prefix has such a route; a checked catch-all comes last.
func routeAssertions(where string, vh *routev3.VirtualHost, filters map[string]bool, f *flavour) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": "+format, args...))
	}
	// Headers some backends route by instead of the path: keygate decides
	// on them, and they never reach the upstream, on any route.
	for _, h := range authz.PathOverrideHeaders() {
		if !slices.ContainsFunc(vh.GetRequestHeadersToRemove(), func(x string) bool { return strings.EqualFold(x, h) }) {
			fail("does not remove %s before the upstream (request_headers_to_remove): a backend that routes by it would serve a path keygate may not have allowed", h)
		}
	}
	tagged := map[string]string{} // prefix → module
	publicSeen := false
	for i, r := range vh.GetRoutes() {
		at := fmt.Sprintf("route %d (%q)", i, r.GetName())
		for name := range r.GetTypedPerFilterConfig() {
			if !filters[name] {
				fail("%s: typed_per_filter_config names %q, which is not in the HTTP filter chain", at, name)
			}
		}
		if r.GetRoute() == nil && r.GetDirectResponse() == nil && r.GetRedirect() == nil {
			fail("%s: no route, redirect or direct_response action", at)
		}
		per, err := perRoute(r)
		if err != nil {
			fail("%s: %v", at, err)
			continue
		}
		m := r.GetMatch()
		switch {
		case per.GetDisabled():
			if !slices.Contains(publicPaths, m.GetPath()) {
				fail("%s disables ext_authz; only exact health paths %v may", at, publicPaths)
			} else if m.GetPath() == "/healthz" {
				publicSeen = true
			}
			// Unchecked, so nothing vouches for identity headers, and
			// nothing removes the credential: the route must.
			for _, h := range publicStrip {
				if !slices.ContainsFunc(r.GetRequestHeadersToRemove(), func(x string) bool { return strings.EqualFold(x, h) }) {
					fail("%s skips the check but does not remove %s from the request (request_headers_to_remove)", at, h)
				}
			}
		case !f.moduleRoutes && len(per.GetCheckSettings().GetContextExtensions()) > 0:
			fail("%s: context_extensions are ignored in HTTP mode: keygate's path table decides the module", at)
		case per.GetCheckSettings().GetContextExtensions()["module"] != "":
			module := per.GetCheckSettings().GetContextExtensions()["module"]
			prefix := m.GetPathSeparatedPrefix()
			if prefix == "" {
				fail("%s: module route must match with path_separated_prefix (whole segments)", at)
				continue
			}
			if cs := m.GetCaseSensitive(); cs == nil || cs.GetValue() {
				fail("%s: module route must set case_sensitive: false (keygate matches modules case-insensitively)", at)
			}
			want, ok := policyModules[prefix]
			switch {
			case !ok:
				fail("%s: prefix %s is not in keygate's policy", at, prefix)
			case module != want:
				fail("%s: prefix %s is tagged with module %q; the policy says %q", at, prefix, module, want)
			}
			tagged[prefix] = module
		}
	}
	if !publicSeen {
		fail("no public /healthz route with ext_authz disabled")
	}
	for prefix, module := range policyModules {
		if f.moduleRoutes && tagged[prefix] != module {
			fail("no route tags %s with module %s", prefix, module)
		}
	}
	if n := len(vh.GetRoutes()); n == 0 {
		fail("no routes")
	} else {
		last := vh.GetRoutes()[n-1]
		per, _ := perRoute(last)
		if last.GetMatch().GetPrefix() != "/" || per.GetDisabled() || len(per.GetCheckSettings().GetContextExtensions()) != 0 {
			fail(`the last route must be a checked catch-all (prefix "/", no module, ext_authz not disabled)`)
		}
	}
	return errs
}

// perRoute returns the route's ExtAuthzPerRoute, or an empty one.
func perRoute(r *routev3.Route) (*ext_authzv3.ExtAuthzPerRoute, error) {
	a, ok := r.GetTypedPerFilterConfig()[extAuthzFilter]
	if !ok {
		return new(ext_authzv3.ExtAuthzPerRoute), nil
	}
	per, err := unpack[*ext_authzv3.ExtAuthzPerRoute](a)
	if err != nil {
		return nil, fmt.Errorf("typed_per_filter_config[%q]: %w", extAuthzFilter, err)
	}
	return per, nil
}

// wildcardHost returns the virtual host serving domain "*".
func wildcardHost(rc *routev3.RouteConfiguration) *routev3.VirtualHost {
	for _, vh := range rc.GetVirtualHosts() {
		if slices.Contains(vh.GetDomains(), "*") {
			return vh
		}
	}
	return nil
}

// routeFor replays Envoy's route selection for a canonical request path
// (query allowed) and returns the class of the first matching route: the
// module it tags, routePublic, routeChecked or routeNone. It understands the
// matchers envoy.yaml uses (path, prefix, path_separated_prefix, each with
// case_sensitive) and refuses any other, so the replay cannot be silently
// wrong.
func routeFor(vh *routev3.VirtualHost, path string) (string, error) {
	p, _, _ := strings.Cut(path, "?")
	for i, r := range vh.GetRoutes() {
		m := r.GetMatch()
		rest := proto.Clone(m).(*routev3.RouteMatch)
		rest.PathSpecifier, rest.CaseSensitive = nil, nil
		if proto.Size(rest) != 0 {
			return "", fmt.Errorf("route %d (%q): matcher %v cannot be replayed by this test", i, r.GetName(), rest)
		}
		fold := m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()
		eq := func(a, b string) bool { return a == b || fold && strings.EqualFold(a, b) }
		hasPrefix := func(s, prefix string) bool { return len(s) >= len(prefix) && eq(s[:len(prefix)], prefix) }
		var ok bool
		switch spec := m.GetPathSpecifier().(type) {
		case *routev3.RouteMatch_Path:
			ok = eq(p, spec.Path)
		case *routev3.RouteMatch_Prefix:
			ok = hasPrefix(p, spec.Prefix)
		case *routev3.RouteMatch_PathSeparatedPrefix:
			pre := spec.PathSeparatedPrefix
			ok = hasPrefix(p, pre) && (len(p) == len(pre) || p[len(pre)] == '/')
		default:
			return "", fmt.Errorf("route %d (%q): path matcher %T cannot be replayed by this test", i, r.GetName(), spec)
		}
		if !ok {
			continue
		}
		per, err := perRoute(r)
		if err != nil {
			return "", err
		}
		if per.GetDisabled() {
			return routePublic, nil
		}
		if module := per.GetCheckSettings().GetContextExtensions()["module"]; module != "" {
			return module, nil
		}
		return routeChecked, nil
	}
	return routeNone, nil
}

// unpack returns the message in a, which must be of type T.
func unpack[T proto.Message](a *anypb.Any) (T, error) {
	var zero T
	if a == nil {
		return zero, errors.New("not set")
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("is %s, want %T", m.ProtoReflect().Descriptor().FullName(), zero)
	}
	return t, nil
}

// Test helpers.

func mustRead(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustVirtualHost(tb testing.TB, bs *bootstrapv3.Bootstrap) *routev3.VirtualHost {
	tb.Helper()
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if hcm, err := unpack[*hcmv3.HttpConnectionManager](f.GetTypedConfig()); err == nil {
					if vh := wildcardHost(hcm.GetRouteConfig()); vh != nil {
						return vh
					}
				}
			}
		}
	}
	tb.Fatal(`no virtual host for domain "*"`)
	return nil
}

// mustTree parses YAML into a generic tree of maps, slices and scalars.
func mustTree(tb testing.TB, doc []byte) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// mustJSON encodes a tree; JSON is valid YAML, so check reads it as is.
func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// named selects the element of a list whose "name" is the given string.
type named string

func join(path []any, more ...any) []any { return append(slices.Clip(path), more...) }

// dig follows steps (map keys, list indexes, or named list elements) from v.
func dig(tb testing.TB, v any, steps ...any) any {
	tb.Helper()
	for i, s := range steps {
		switch s := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				tb.Fatalf("step %d (%q) of %v: not an object", i, s, steps)
			}
			if v, ok = m[s]; !ok {
				tb.Fatalf("step %d of %v: no key %q", i, steps, s)
			}
		case int:
			l, ok := v.([]any)
			if !ok || s >= len(l) {
				tb.Fatalf("step %d (%d) of %v: not a list that long", i, s, steps)
			}
			v = l[s]
		case named:
			l, ok := v.([]any)
			if !ok {
				tb.Fatalf("step %d (%q) of %v: not a list", i, s, steps)
			}
			idx := slices.IndexFunc(l, func(e any) bool {
				m, ok := e.(map[string]any)
				return ok && m["name"] == string(s)
			})
			if idx < 0 {
				tb.Fatalf("step %d of %v: no element named %q", i, steps, s)
			}
			v = l[idx]
		default:
			tb.Fatalf("step %d of %v: bad step type %T", i, steps, s)
		}
	}
	return v
}

func object(tb testing.TB, doc map[string]any, path []any) map[string]any {
	tb.Helper()
	m, ok := dig(tb, doc, path...).(map[string]any)
	if !ok {
		tb.Fatalf("%v: not an object", path)
	}
	return m
}

func set(tb testing.TB, doc map[string]any, path []any, key string, value any) {
	tb.Helper()
	object(tb, doc, path)[key] = value
}

// remove deletes key, which must exist, so a mutation cannot silently miss.
func remove(tb testing.TB, doc map[string]any, path []any, key string) {
	tb.Helper()
	m := object(tb, doc, path)
	if _, ok := m[key]; !ok {
		tb.Fatalf("%v: no key %q to remove", path, key)
	}
	delete(m, key)
}

func rename(tb testing.TB, doc map[string]any, path []any, from, to string) {
	tb.Helper()
	m := object(tb, doc, path)
	v, ok := m[from]
	if !ok {
		tb.Fatalf("%v: no key %q to rename", path, from)
	}
	delete(m, from)
	m[to] = v
}

// Access-log command operators.
//
// Envoy refuses a configuration whose format names an operator it does not
// know or gives one an argument it does not take, but only when it loads
// the file; the structural check above does not look inside format
// strings. The operators below, their arguments and whether they take a
// length (:Z), are those of Envoy's documentation:
// configuration/observability/access_log/usage, "Command Operators" (in
// newer documentation configuration/advanced/substitution_formatter,
// "Supported commands").
// An operator added to Envoy later must be added here before a shipped file
// may use it.

// operatorArgs says whether an operator takes an argument in parentheses.
type operatorArgs int

const (
	argNone     operatorArgs = iota // %NAME%
	argOptional                     // %NAME% or %NAME(ARG)%
	argRequired                     // %NAME(ARG)%
)

// operatorSpec describes one command operator.
type operatorSpec struct {
	args   operatorArgs
	length bool               // accepts :Z, a truncation length
	valid  func(string) error // checks the argument, if any
}

// envoyOperators are Envoy's command operators.
var envoyOperators = func() map[string]operatorSpec {
	ops := map[string]operatorSpec{}
	plain := []string{
		"REQUEST_HEADERS_BYTES", "BYTES_RECEIVED", "BYTES_RETRANSMITTED", "PACKETS_RETRANSMITTED",
		"PROTOCOL", "UPSTREAM_PROTOCOL", "RESPONSE_CODE", "CONNECTION_TERMINATION_DETAILS",
		"RESPONSE_HEADERS_BYTES", "RESPONSE_TRAILERS_BYTES", "BYTES_SENT", "UPSTREAM_REQUEST_ATTEMPT_COUNT",
		"UPSTREAM_WIRE_BYTES_SENT", "UPSTREAM_WIRE_BYTES_RECEIVED", "UPSTREAM_HEADER_BYTES_SENT",
		"UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT", "UPSTREAM_HEADER_BYTES_RECEIVED",
		"UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED", "DOWNSTREAM_WIRE_BYTES_SENT",
		"DOWNSTREAM_WIRE_BYTES_RECEIVED", "DOWNSTREAM_HEADER_BYTES_SENT",
		"DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT", "DOWNSTREAM_HEADER_BYTES_RECEIVED",
		"DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED", "DURATION", "REQUEST_DURATION",
		"REQUEST_TX_DURATION", "RESPONSE_DURATION", "ROUNDTRIP_DURATION", "RESPONSE_TX_DURATION",
		"DOWNSTREAM_HANDSHAKE_DURATION", "UPSTREAM_CONNECTION_POOL_READY_DURATION",
		"RESPONSE_FLAGS", "RESPONSE_FLAGS_LONG", "ROUTE_NAME", "VIRTUAL_CLUSTER_NAME",
		"UPSTREAM_HOST", "UPSTREAM_HOST_NAME", "UPSTREAM_HOST_NAME_WITHOUT_PORT",
		"UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW", "UPSTREAM_LOCAL_ADDRESS", "UPSTREAM_LOCAL_PORT",
		"UPSTREAM_REMOTE_ADDRESS", "UPSTREAM_REMOTE_PORT", "UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID",
		"UPSTREAM_TRANSPORT_FAILURE_REASON", "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
		"DOWNSTREAM_LOCAL_CLOSE_REASON", "DOWNSTREAM_DETECTED_CLOSE_TYPE",
		"DOWNSTREAM_REMOTE_ADDRESS", "DOWNSTREAM_REMOTE_PORT", "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
		"DOWNSTREAM_DIRECT_REMOTE_PORT", "DOWNSTREAM_LOCAL_ADDRESS", "DOWNSTREAM_DIRECT_LOCAL_ADDRESS",
		"DOWNSTREAM_LOCAL_PORT", "DOWNSTREAM_DIRECT_LOCAL_PORT", "DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID",
		"DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID", "CONNECTION_ID", "UPSTREAM_CONNECTION_ID",
		"STREAM_ID", "GRPC_STATUS_NUMBER",
		"DOWNSTREAM_LOCAL_IP_SAN", "DOWNSTREAM_PEER_IP_SAN", "DOWNSTREAM_LOCAL_DNS_SAN",
		"DOWNSTREAM_PEER_DNS_SAN", "DOWNSTREAM_LOCAL_URI_SAN", "DOWNSTREAM_PEER_URI_SAN",
		"DOWNSTREAM_LOCAL_EMAIL_SAN", "DOWNSTREAM_PEER_EMAIL_SAN", "DOWNSTREAM_LOCAL_OTHERNAME_SAN",
		"DOWNSTREAM_PEER_OTHERNAME_SAN", "DOWNSTREAM_LOCAL_SUBJECT", "DOWNSTREAM_PEER_SUBJECT",
		"DOWNSTREAM_PEER_ISSUER", "DOWNSTREAM_TLS_SESSION_ID", "DOWNSTREAM_TLS_CIPHER",
		"DOWNSTREAM_TLS_VERSION", "DOWNSTREAM_PEER_FINGERPRINT_256", "DOWNSTREAM_PEER_FINGERPRINT_1",
		"DOWNSTREAM_PEER_SERIAL", "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256",
		"DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1", "DOWNSTREAM_PEER_CHAIN_SERIALS", "DOWNSTREAM_PEER_CERT",
		"TLS_JA3_FINGERPRINT", "TLS_JA4_FINGERPRINT", "UPSTREAM_PEER_SUBJECT", "UPSTREAM_PEER_ISSUER",
		"UPSTREAM_TLS_SESSION_ID", "UPSTREAM_TLS_CIPHER", "UPSTREAM_TLS_VERSION", "UPSTREAM_PEER_CERT",
		"UPSTREAM_PEER_URI_SAN", "UPSTREAM_PEER_DNS_SAN", "UPSTREAM_PEER_IP_SAN", "UPSTREAM_LOCAL_URI_SAN",
		"UPSTREAM_LOCAL_DNS_SAN", "UPSTREAM_LOCAL_IP_SAN", "HOSTNAME", "LOCAL_REPLY_BODY",
		"FILTER_CHAIN_NAME", "ACCESS_LOG_TYPE", "UNIQUE_ID", "TRACE_ID", "CUSTOM_FLAGS",
	}
	for _, name := range plain {
		ops[name] = operatorSpec{}
	}
	// Times take an optional strftime-like format (which may contain %).
	for _, name := range []string{"START_TIME", "START_TIME_LOCAL", "EMIT_TIME", "EMIT_TIME_LOCAL",
		"DOWNSTREAM_PEER_CERT_V_START", "DOWNSTREAM_PEER_CERT_V_END", "UPSTREAM_PEER_CERT_V_START", "UPSTREAM_PEER_CERT_V_END"} {
		ops[name] = operatorSpec{args: argOptional}
	}
	// Addresses without the port take an optional mask length.
	for _, name := range []string{"UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
		"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
		"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT"} {
		ops[name] = operatorSpec{args: argOptional, valid: maskLength}
	}
	// %REQ(X?Y):Z% and the like: a header, an optional alternative.
	for _, name := range []string{"REQ", "REQUEST_HEADER", "RESP", "RESPONSE_HEADER", "TRAILER", "RESPONSE_TRAILER", "REQ_WITHOUT_QUERY"} {
		ops[name] = operatorSpec{args: argRequired, length: true, valid: headerPair}
	}
	// %DYNAMIC_METADATA(NAMESPACE:KEY*):Z% and the like.
	for _, name := range []string{"DYNAMIC_METADATA", "CLUSTER_METADATA", "UPSTREAM_METADATA"} {
		ops[name] = operatorSpec{args: argRequired, length: true, valid: metadataPath}
	}
	ops["METADATA"] = operatorSpec{args: argRequired, length: true, valid: typedMetadataPath}
	ops["FILTER_STATE"] = operatorSpec{args: argRequired, length: true, valid: filterState}
	ops["UPSTREAM_FILTER_STATE"] = operatorSpec{args: argRequired, length: true, valid: filterState}
	ops["RESPONSE_CODE_DETAILS"] = operatorSpec{args: argOptional, valid: oneOf("ALLOW_WHITESPACES")}
	ops["GRPC_STATUS"] = operatorSpec{args: argOptional, valid: oneOf("CAMEL_STRING", "SNAKE_STRING", "NUMBER")}
	ops["COMMON_DURATION"] = operatorSpec{args: argRequired, valid: commonDuration}
	ops["REQUESTED_SERVER_NAME"] = operatorSpec{args: argOptional, valid: pair(oneOf("", "SNI_ONLY", "SNI_FIRST", "HOST_FIRST"), oneOf("", "ORIG", "HOST", "ORIG_OR_HOST"))}
	ops["PATH"] = operatorSpec{args: argOptional, length: true, valid: pair(oneOf("", "WQ", "NQ"), oneOf("", "ORIG", "PATH", "ORIG_OR_PATH"))}
	for _, name := range []string{"ENVIRONMENT", "QUERY_PARAM", "CEL", "TYPED_CEL"} {
		ops[name] = operatorSpec{args: argRequired, length: true, valid: nonEmpty}
	}
	ops["COALESCE"] = operatorSpec{args: argRequired, length: true, valid: coalesce}
	return ops
}()

// operator is one command operator in a format string.
type operator struct {
	text   string // as written, %…%
	name   string
	arg    string
	hasArg bool
	length bool // :Z given
}

// parseFormat splits a format string into its command operators; a %
// that does not start one is an error, as it is for Envoy.
func parseFormat(s string) ([]operator, error) {
	var ops []operator
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '%')
		if j < 0 {
			break
		}
		i += j
		k := i + 1
		for k < len(s) && (s[k] >= 'A' && s[k] <= 'Z' || s[k] >= '0' && s[k] <= '9' || s[k] == '_') {
			k++
		}
		op := operator{name: s[i+1 : k]}
		if op.name == "" {
			return nil, fmt.Errorf("a %% at byte %d starts no command operator (%%NAME%%)", i)
		}
		if k < len(s) && s[k] == '(' {
			end := strings.IndexByte(s[k:], ')')
			if end < 0 {
				return nil, fmt.Errorf("%%%s( at byte %d is not closed", op.name, i)
			}
			op.arg, op.hasArg = s[k+1:k+end], true
			k += end + 1
		}
		if k < len(s) && s[k] == ':' {
			d := k + 1
			for d < len(s) && s[d] >= '0' && s[d] <= '9' {
				d++
			}
			if d == k+1 {
				return nil, fmt.Errorf("%%%s at byte %d: a length after ':' must be a number", op.name, i)
			}
			op.length, k = true, d
		}
		if k >= len(s) || s[k] != '%' {
			return nil, fmt.Errorf("%%%s at byte %d does not end with %%", op.name, i)
		}
		op.text = s[i : k+1]
		ops = append(ops, op)
		i = k + 1
	}
	return ops, nil
}

// validate checks an operator against Envoy's documented ones.
func (op operator) validate() error {
	spec, ok := envoyOperators[op.name]
	switch {
	case !ok:
		return fmt.Errorf("%s: Envoy has no command operator %s", op.text, op.name)
	case op.hasArg && spec.args == argNone:
		return fmt.Errorf("%s: %s takes no argument", op.text, op.name)
	case !op.hasArg && spec.args == argRequired:
		return fmt.Errorf("%s: %s needs an argument in parentheses", op.text, op.name)
	case op.length && !spec.length:
		return fmt.Errorf("%s: %s takes no length (:Z)", op.text, op.name)
	}
	if op.hasArg && spec.valid != nil {
		if err := spec.valid(op.arg); err != nil {
			return fmt.Errorf("%s: %v", op.text, err)
		}
	}
	return nil
}

// Argument checks.

var headerName = regexp.MustCompile(`^:?[A-Za-z0-9!#$&'*+.^_` + "`" + `|~-]+$`)

func headerPair(arg string) error {
	parts := strings.Split(arg, "?")
	if len(parts) > 2 {
		return errors.New("more than one alternative header")
	}
	for _, h := range parts {
		if !headerName.MatchString(h) {
			return fmt.Errorf("%q is not a header name", h)
		}
	}
	return nil
}

func metadataPath(arg string) error {
	if ns, _, _ := strings.Cut(arg, ":"); ns == "" {
		return errors.New("no metadata namespace")
	}
	return nil
}

func typedMetadataPath(arg string) error {
	kind, rest, _ := strings.Cut(arg, ":")
	if err := oneOf("DYNAMIC", "CLUSTER", "ROUTE", "UPSTREAM_HOST", "LISTENER", "LISTENER_FILTER_CHAIN", "VIRTUAL_HOST")(kind); err != nil {
		return err
	}
	return metadataPath(rest)
}

func filterState(arg string) error {
	parts := strings.Split(arg, ":")
	if parts[0] == "" {
		return errors.New("no filter state key")
	}
	if len(parts) > 1 {
		if err := oneOf("PLAIN", "TYPED", "FIELD")(parts[1]); err != nil {
			return err
		}
		if (parts[1] == "FIELD") != (len(parts) == 3) || len(parts) > 3 {
			return errors.New("FIELD and only FIELD takes a field name")
		}
	}
	return nil
}

func commonDuration(arg string) error {
	parts := strings.Split(arg, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return errors.New("want START:END:PRECISION")
	}
	return oneOf("ms", "us", "ns")(parts[2])
}

func maskLength(arg string) error {
	if n, err := strconv.Atoi(arg); err != nil || n < 0 || n > 128 {
		return fmt.Errorf("mask length %q is not a number from 0 to 128", arg)
	}
	return nil
}

func nonEmpty(arg string) error {
	if arg == "" {
		return errors.New("empty argument")
	}
	return nil
}

func coalesce(arg string) error {
	var cfg struct {
		Operators []json.RawMessage `json:"operators"`
	}
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil || len(cfg.Operators) == 0 {
		return errors.New(`want a JSON object with an "operators" list`)
	}
	return nil
}

// oneOf accepts exactly the given values.
func oneOf(values ...string) func(string) error {
	return func(arg string) error {
		if !slices.Contains(values, arg) {
			return fmt.Errorf("%q is not one of %q", arg, values)
		}
		return nil
	}
}

// pair checks X or X:Y.
func pair(x, y func(string) error) func(string) error {
	return func(arg string) error {
		a, b, _ := strings.Cut(arg, ":")
		if strings.Contains(b, ":") {
			return errors.New("more than two parts")
		}
		return errors.Join(x(a), y(b))
	}
}

// What keygate's access logs must not contain.

// secretHeaders carry the API key (keygate's default --key-header) or
// other credentials.
var secretHeaders = []string{"x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie"}

// pathHeaders hold the request path with its query string.
var pathHeaders = []string{":path", "x-envoy-original-path"}

// logPolicy refuses operators that would write the query string (tokens,
// e-mail addresses and other secrets ride in queries) or a credential, and
// those the check cannot see through.
func (op operator) logPolicy() error {
	switch op.name {
	case "REQ", "REQUEST_HEADER", "RESP", "RESPONSE_HEADER", "TRAILER", "RESPONSE_TRAILER":
		for _, h := range strings.Split(strings.ToLower(op.arg), "?") {
			switch {
			case slices.Contains(secretHeaders, h):
				return fmt.Errorf("%s logs the %s header: the API key and other credentials must never be logged", op.text, h)
			case slices.Contains(pathHeaders, h) && strings.HasPrefix(op.name, "REQ"):
				return fmt.Errorf("%s logs the path with its query string; use %%PATH(NQ:ORIG_OR_PATH)%%", op.text)
			}
		}
	case "PATH":
		if x, _, _ := strings.Cut(op.arg, ":"); x != "NQ" {
			return fmt.Errorf("%s logs the path with its query string (WQ is the default); use %%PATH(NQ:ORIG_OR_PATH)%%", op.text)
		}
	case "QUERY_PARAM":
		return fmt.Errorf("%s logs a query parameter", op.text)
	case "REQ_WITHOUT_QUERY":
		return fmt.Errorf("%s is deprecated and needs a formatter extension; use %%PATH(NQ:ORIG_OR_PATH)%%", op.text)
	case "CEL", "TYPED_CEL", "COALESCE":
		return fmt.Errorf("%s can read any part of the request (the query, the key header): this check cannot see through it", op.text)
	}
	return nil
}

// checkFormat returns the problems of one format string.
func checkFormat(s string) (ops []operator, errs []error) {
	ops, err := parseFormat(s)
	if err != nil {
		return nil, []error{fmt.Errorf("%q: %w", s, err)}
	}
	for _, op := range ops {
		if err := op.validate(); err != nil {
			errs = append(errs, err)
		} else if err := op.logPolicy(); err != nil {
			errs = append(errs, err)
		}
	}
	return ops, errs
}

// formatStrings returns every string in a tree that contains a %: in an
// access log's configuration those are its formats (json_format values,
// text_format, text_format_source, the deprecated format).
func formatStrings(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		if strings.Contains(v, "%") {
			out = append(out, v)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			out = append(out, formatStrings(v[k])...)
		}
	case []any:
		for _, e := range v {
			out = append(out, formatStrings(e)...)
		}
	}
	return out
}

// logKeys hold access logs in Envoy configurations (proto and JSON
// spellings), and Istio's mesh-wide access log format.
var logKeys = []string{"access_log", "accessLog", "upstream_log", "upstreamLog", "accessLogFormat"}

// accessLogFormats returns the access-log formats of a YAML document: in an
// Envoy bootstrap (static_resources or dynamic_resources at the top),
// every string with a % below an access_log or upstream_log key at any
// depth; anywhere, Istio's accessLogFormat; and the same inside a string
// that is itself an Envoy bootstrap (a ConfigMap's envoy.yaml).
func accessLogFormats(doc any) []string {
	var out []string
	m, _ := doc.(map[string]any)
	bootstrap := m != nil && (m["static_resources"] != nil || m["staticResources"] != nil || m["dynamic_resources"] != nil || m["dynamicResources"] != nil)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				switch {
				case k == "accessLogFormat" || bootstrap && slices.Contains(logKeys, k):
					out = append(out, formatStrings(v[k])...)
				default:
					walk(v[k])
				}
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if strings.Contains(v, "static_resources:") || strings.Contains(v, "dynamic_resources:") {
				var inner any
				if yaml.Unmarshal([]byte(v), &inner) == nil {
					out = append(out, accessLogFormats(inner)...)
				}
			}
		}
	}
	walk(doc)
	return out
}

// TestAccessLogFormats checks the access-log formats of every Envoy (and
// Istio) configuration the repository ships, not only the two files the
// bootstrap check loads: deploy/ and any other directory included.
func TestAccessLogFormats(t *testing.T) {
	counts := map[string]int{}
	for _, f := range shippedYAML(t) {
		dec := yaml3.NewDecoder(bytes.NewReader(mustRead(t, filepath.Join("..", f))))
		for {
			var doc any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, s := range accessLogFormats(doc) {
				counts[f]++
				_, errs := checkFormat(s)
				for _, err := range errs {
					t.Errorf("%s: %v", f, err)
				}
			}
		}
	}
	for _, f := range []string{"envoy/" + configFile, "envoy/" + httpConfigFile} {
		if counts[f] == 0 {
			t.Errorf("no access-log format found in %s", f)
		}
	}
	t.Logf("access-log formats checked: %v", counts)
}

// TestAccessLogFormatsFail proves the repository-wide walk finds formats
// where the bootstrap check does not look, and refuses bad ones.
func TestAccessLogFormatsFail(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"listener access log", `
static_resources:
  listeners:
  - access_log:
    - typed_config:
        log_format: {text_format_source: {inline_string: "%REQ(:PATH)%\n"}}`, "query string"},
		{"router upstream log", `
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - typed_config:
          http_filters:
          - typed_config:
              upstream_log:
              - typed_config: {log_format: {json_format: {path: "%PATH%"}}}`, "query string"},
		{"JSON spelling", `{"staticResources": {"listeners": [{"accessLog": [{"typedConfig": {"logFormat": {"textFormat": "%RESPONSE_COD%"}}}]}]}}`, "no command operator RESPONSE_COD"},
		{"Istio mesh config", `
spec:
  meshConfig:
    accessLogFormat: "[%START_TIME%] %REQ(X-API-KEY)%\n"`, "x-api-key header"},
		{"bootstrap inside a ConfigMap", `
kind: ConfigMap
data:
  envoy.yaml: |
    static_resources:
      listeners:
      - access_log:
        - typed_config: {log_format: {text_format: "%DURATION:3%"}}`, "takes no length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc any
			if err := yaml.Unmarshal([]byte(tc.doc), &doc); err != nil {
				t.Fatal(err)
			}
			formats := accessLogFormats(doc)
			if len(formats) == 0 {
				t.Fatal("no format found")
			}
			var errs []error
			for _, s := range formats {
				_, e := checkFormat(s)
				errs = append(errs, e...)
			}
			if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
	// Outside an Envoy bootstrap, access_log is someone else's key.
	var doc any
	if err := yaml.Unmarshal([]byte("services: {x: {access_log: \"%REQ(:PATH)%\"}}"), &doc); err != nil {
		t.Fatal(err)
	}
	if f := accessLogFormats(doc); len(f) != 0 {
		t.Errorf("formats found outside an Envoy bootstrap: %q", f)
	}
}

// TestOperators checks the operator table and parser against the
// documentation's own examples, and against what Envoy refuses.
func TestOperators(t *testing.T) {
	valid := []string{
		"[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n",
		"%START_TIME(%Y/%m/%dT%H:%M:%S%z)%", "%START_TIME(%s.%3f)%",
		"%DYNAMIC_METADATA(com.test.my_filter:test_object:inner_key)%", "%DYNAMIC_METADATA(com.test.my_filter:test_key):2%",
		"%METADATA(ROUTE:com.test.my_filter:test_key)%", "%FILTER_STATE(my.key:PLAIN)%", "%FILTER_STATE(my.key:FIELD:name)%",
		"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(16)%", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
		"%PATH(NQ:ORIG_OR_PATH)%", "%PATH(WQ)%", "%PATH:10%", "%GRPC_STATUS(NUMBER)%", "%RESPONSE_CODE_DETAILS(ALLOW_WHITESPACES)%",
		"%COMMON_DURATION(DS_RX_BEG:DS_TX_END:ms)%", "%REQUESTED_SERVER_NAME(SNI_FIRST:ORIG_OR_HOST)%",
		`%COALESCE({"operators": ["REQUESTED_SERVER_NAME", {"command": "REQ", "param": ":authority"}]}):50%`,
	}
	for _, s := range valid {
		ops, err := parseFormat(s)
		if err != nil {
			t.Errorf("parse %q: %v", s, err)
			continue
		}
		for _, op := range ops {
			if err := op.validate(); err != nil {
				t.Errorf("%q: %v", s, err)
			}
		}
	}
	invalid := map[string]string{
		"%RESPONSE_COD%":                             "no command operator",
		"%PROTOCOL(x)%":                              "takes no argument",
		"%REQ%":                                      "needs an argument",
		"%DURATION:3%":                               "takes no length",
		"%REQ(A?B?C)%":                               "more than one alternative",
		"%REQ(bad header)%":                          "not a header name",
		"%PATH(NQX)%":                                `"NQX" is not one of`,
		"%PATH(NQ:ORIGINAL)%":                        `"ORIGINAL" is not one of`,
		"%GRPC_STATUS(STRING)%":                      "is not one of",
		"%METADATA(DYNAMICS:ns)%":                    "is not one of",
		"%DYNAMIC_METADATA(:key)%":                   "no metadata namespace",
		"%FILTER_STATE(k:FIELD)%":                    "FIELD and only FIELD",
		"%COMMON_DURATION(DS_RX_BEG:DS_TX_END)%":     "START:END:PRECISION",
		"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT(x)%": "mask length",
		"%COALESCE(REQ)%":                            "operators",
		"100% sure":                                  "starts no command operator",
		"%REQ(:PATH":                                 "is not closed",
		"%DURATION":                                  "does not end with %",
		"%REQ(X):%":                                  "must be a number",
	}
	for s, want := range invalid {
		var err error
		ops, perr := parseFormat(s)
		err = perr
		for _, op := range ops {
			err = errors.Join(err, op.validate())
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v; want an error containing %q", s, err, want)
		}
	}
}

// shippedYAML lists the repository's YAML files.
func shippedYAML(tb testing.TB) []string {
	tb.Helper()
	return repofiles.YAML(tb, "..")
}

// The commented upstream TLS example.
//
// Each configuration carries, in comments inside the keygate cluster, a
// transport_socket for TLS and mutual TLS to keygate. A comment is not
// loaded by anything, so the test uncomments it in place and holds the
// result to every check, and to what TLS to keygate needs.

// tlsExampleStart is the first line of the commented example.
var tlsExampleStart = regexp.MustCompile(`(?m)^( *)# transport_socket:\n`)

// uncommentTLS returns doc with its one commented transport_socket block
// uncommented: the line `<indent># transport_socket:` and the lines after
// it that continue the block (`<indent>#  ` and deeper).
func uncommentTLS(doc []byte) ([]byte, error) {
	locs := tlsExampleStart.FindAllSubmatchIndex(doc, -1)
	if len(locs) != 1 {
		return nil, fmt.Errorf("want exactly one commented transport_socket example, found %d", len(locs))
	}
	indent := string(doc[locs[0][2]:locs[0][3]])
	lines := strings.SplitAfter(string(doc), "\n")
	var out strings.Builder
	in := false
	for _, line := range lines {
		switch {
		case line == indent+"# transport_socket:\n":
			in = true
			line = indent + "transport_socket:\n"
		case in && strings.HasPrefix(line, indent+"#   "):
			line = indent + line[len(indent)+2:]
		default:
			in = false
		}
		out.WriteString(line)
	}
	return []byte(out.String()), nil
}

// tlsAssertions checks the keygate cluster's TLS: keygate's certificate is
// verified (a CA and the name), Envoy presents a client certificate for
// mutual TLS, and gRPC negotiates HTTP/2 by ALPN.
func tlsAssertions(bs *bootstrapv3.Bootstrap, grpc bool) []error {
	var c *clusterv3.Cluster
	for _, cl := range bs.GetStaticResources().GetClusters() {
		if cl.GetName() == "keygate" {
			c = cl
		}
	}
	if c == nil {
		return []error{errors.New(`no cluster "keygate"`)}
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster keygate: transport_socket: "+format, args...))
	}
	ctx, err := unpack[*tlsv3.UpstreamTlsContext](c.GetTransportSocket().GetTypedConfig())
	if err != nil {
		return []error{fmt.Errorf("cluster keygate: transport_socket: want an UpstreamTlsContext: %w", err)}
	}
	sni := ctx.GetSni()
	if sni == "" {
		fail("sni is not set")
	}
	common := ctx.GetCommonTlsContext()
	vc := common.GetValidationContext()
	if vc.GetTrustedCa() == nil {
		fail("validation_context.trusted_ca is not set: keygate's certificate would not be verified")
	}
	if !slices.ContainsFunc(vc.GetMatchTypedSubjectAltNames(), func(m *tlsv3.SubjectAltNameMatcher) bool {
		return m.GetSanType() == tlsv3.SubjectAltNameMatcher_DNS && m.GetMatcher().GetExact() == sni
	}) {
		fail("validation_context.match_typed_subject_alt_names does not require the DNS name %q: any certificate of the CA would do", sni)
	}
	if len(common.GetTlsCertificates()) == 0 && len(common.GetTlsCertificateSdsSecretConfigs()) == 0 {
		fail("no client certificate (tls_certificates) for keygate's --tls-client-ca-file (mutual TLS)")
	}
	if grpc && !slices.Contains(common.GetAlpnProtocols(), "h2") {
		fail(`alpn_protocols lacks "h2": gRPC servers in Go refuse TLS without it`)
	}
	return errs
}

func TestUpstreamTLSExample(t *testing.T) {
	for _, f := range []*flavour{grpcConfig, httpConfig} {
		t.Run(f.file, func(t *testing.T) {
			doc, err := uncommentTLS(mustRead(t, f.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := checkTLSExample(f, doc); err != nil {
				t.Fatalf("%s with its TLS example uncommented:\n%v", f.file, err)
			}
		})
	}
}

// checkTLSExample runs every check on a configuration whose TLS example is
// uncommented, and the TLS assertions.
func checkTLSExample(f *flavour, doc []byte) error {
	bs, err := load(doc)
	if err != nil {
		return err
	}
	errs := assertions(bs, f)
	return errors.Join(append(errs, tlsAssertions(bs, f == grpcConfig)...)...)
}

// TestUpstreamTLSExampleFails proves the example is checked: each case
// breaks the commented text, which must then fail.
func TestUpstreamTLSExampleFails(t *testing.T) {
	tests := []struct {
		name, file, old, new, want string
	}{
		{"typo", configFile, "#     sni:", "#     snii:", `unknown field "snii"`},
		{"no name check", configFile, "    #         match_typed_subject_alt_names:\n    #         - san_type: DNS\n    #           matcher: { exact: keygate.keygate.svc.cluster.local }\n", "", "does not require the DNS name"},
		{"no CA", httpConfigFile, "    #         trusted_ca: { filename: /etc/envoy/keygate-tls/ca.crt }\n", "", "trusted_ca is not set"},
		{"no client certificate", httpConfigFile, "    #       tls_certificates:\n    #       - certificate_chain: { filename: /etc/envoy/keygate-tls/envoy.crt }\n    #         private_key: { filename: /etc/envoy/keygate-tls/envoy.key }\n", "", "no client certificate"},
		{"no ALPN for gRPC", configFile, "    #       alpn_protocols: [\"h2\"]\n", "", `lacks "h2"`},
		{"SAN of another name", configFile, "matcher: { exact: keygate.keygate.svc.cluster.local }", "matcher: { exact: keygate.example.com }", "does not require the DNS name"},
		{"example gone", configFile, "    # transport_socket:\n", "    # transport socket:\n", "want exactly one commented transport_socket example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := grpcConfig
			if tc.file == httpConfigFile {
				f = httpConfig
			}
			text := string(mustRead(t, tc.file))
			if strings.Count(text, tc.old) != 1 {
				t.Fatalf("%s does not contain %q exactly once", tc.file, tc.old)
			}
			doc, err := uncommentTLS([]byte(strings.Replace(text, tc.old, tc.new, 1)))
			if err == nil {
				err = checkTLSExample(f, doc)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
