package envoy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	ext_authzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/forwardauth"
)

// httpConfigFile is Envoy with keygate as an ext_authz http_service.
const httpConfigFile = "envoy-http.yaml"

// httpConfig is envoy-http.yaml's flavour: the same edge proxy, asking
// keygate over HTTP, with no module routes (context_extensions are gRPC
// only) and the identity in metadata from keygate's headers.
var httpConfig = &flavour{file: httpConfigFile, metadata: httpMetadata, authz: httpServiceAssertions, moduleRoutes: false}

// httpMetadata are the identity headers ext_authz files as metadata.
var httpMetadata = []string{"x-keygate-key-id", "x-keygate-account-id"}

func TestHTTPConfig(t *testing.T) {
	if err := checkAs(httpConfig, mustRead(t, httpConfigFile)); err != nil {
		t.Fatalf("%s does not pass the check:\n%v", httpConfigFile, err)
	}
}

// httpServiceAssertions checks ext_authz in HTTP mode: fail closed with
// 503 within a bounded timeout, keygate's prefix, the key and forged
// identity headers sent to keygate, and only keygate's identity headers
// taken from its answer.
func httpServiceAssertions(where string, a *ext_authzv3.ExtAuthz, clusters map[string]*clusterv3.Cluster) []error {
	errs := failClosedAssertions(where, a)
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": ext_authz: "+format, args...))
	}
	hs := a.GetHttpService()
	if hs == nil || a.GetGrpcService() != nil {
		fail("http_service must be set, and grpc_service not (keygate's forward-auth listener is HTTP)")
		return errs
	}
	switch d := hs.GetServerUri().GetTimeout(); {
	case d == nil:
		fail("http_service.server_uri.timeout is not set")
	case d.AsDuration() <= 0 || d.AsDuration() > maxTimeout:
		fail("http_service.server_uri.timeout is %v; want more than 0 and at most %v", d.AsDuration(), maxTimeout)
	}
	if p := hs.GetPathPrefix(); p != forwardauth.DefaultEnvoyPrefix {
		fail("http_service.path_prefix is %q; keygate answers under --envoy-http-prefix, default %q", p, forwardauth.DefaultEnvoyPrefix)
	}
	if hs.GetPathOverride() != "" {
		fail("http_service.path_override hides the request path from keygate")
	}
	// What keygate is sent: Authorization always is (Envoy's default set).
	sent := append([]string{"x-api-key", "X-API-Key", "x-keygate-admin", "x-keygate-account-id"}, authz.MethodOverrideHeaders()...)
	for _, h := range append(sent, authz.PathOverrideHeaders()...) {
		if !matches(a.GetAllowedHeaders(), h) {
			fail("allowed_headers does not send %s to keygate", h)
		}
	}
	if a.GetDisallowedHeaders() != nil {
		fail("disallowed_headers hides headers keygate reads")
	}
	resp := hs.GetAuthorizationResponse()
	for _, h := range []string{"x-keygate-key-id", "x-keygate-account-id", "x-keygate-scopes", "x-keygate-module"} {
		if !matches(resp.GetAllowedUpstreamHeaders(), h) {
			fail("authorization_response.allowed_upstream_headers does not take %s from keygate's answer", h)
		}
	}
	for _, h := range []string{"x-api-key", "authorization", "content-type", "x-envoy-auth-headers-to-remove", "set-cookie"} {
		if matches(resp.GetAllowedUpstreamHeaders(), h) || matches(resp.GetAllowedUpstreamHeadersToAppend(), h) {
			fail("authorization_response lets %s of keygate's answer reach the upstream", h)
		}
	}
	if resp.GetAllowedUpstreamHeadersToAppend() != nil {
		fail("allowed_upstream_headers_to_append would add keygate's identity beside a client-sent one")
	}
	for _, key := range httpMetadata {
		if !matches(resp.GetDynamicMetadataFromHeaders(), key) {
			fail("authorization_response.dynamic_metadata_from_headers does not file %s for the access log", key)
		}
	}
	if l := resp.GetAllowedClientHeaders(); l != nil {
		for _, h := range []string{"content-type", "cache-control", "www-authenticate"} {
			if !matches(l, h) {
				fail("allowed_client_headers does not pass %s of a denial to the client", h)
			}
		}
	}
	name := hs.GetServerUri().GetCluster()
	if c, ok := clusters[name]; ok {
		healthy := false
		for _, h := range c.GetHealthChecks() {
			healthy = healthy || h.GetHttpHealthCheck().GetPath() == "/readyz"
		}
		if !healthy {
			fail("cluster %q has no HTTP health check on /readyz", name)
		}
		errs = append(errs, outlierAssertions(where, name, c, true)...)
		// Envoy closes its idle connections to keygate before keygate
		// does, or a check may go out on one keygate is closing.
		opts, err := unpack[*upstreamhttpv3.HttpProtocolOptions](c.GetTypedExtensionProtocolOptions()[http2Options])
		idle := opts.GetCommonHttpProtocolOptions().GetIdleTimeout()
		switch {
		case err != nil || idle == nil:
			fail("cluster %q sets no idle_timeout (common_http_protocol_options): Envoy's default, an hour, outlives keygate's %v", name, forwardauth.IdleTimeout)
		case idle.AsDuration() <= 0 || idle.AsDuration() >= forwardauth.IdleTimeout:
			fail("cluster %q: idle_timeout %v; want more than 0 and less than keygate's %v", name, idle.AsDuration(), forwardauth.IdleTimeout)
		}
	}
	if hs.GetRetryPolicy() != nil {
		fail("http_service.retry_policy: a retry cannot fit in the check's timeout after a timeout, and multiplies load; eject broken replicas with outlier_detection instead")
	}
	return errs
}

// matches reports whether a header name matches a ListStringMatcher as
// Envoy does for header names (exact, prefix, suffix, contains; ignore_case);
// a matcher this replay does not know matches nothing, so that it fails
// loudly rather than passing.
func matches(l *matcherv3.ListStringMatcher, name string) bool {
	for _, m := range l.GetPatterns() {
		s, v := name, ""
		fold := m.GetIgnoreCase()
		switch p := m.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			v = p.Exact
			if fold && strings.EqualFold(s, v) || s == v {
				return true
			}
			continue
		case *matcherv3.StringMatcher_Prefix:
			v = p.Prefix
			if len(s) >= len(v) && (fold && strings.EqualFold(s[:len(v)], v) || s[:len(v)] == v) {
				return true
			}
			continue
		}
	}
	return false
}

// TestHTTPCheckFails proves the HTTP-mode check can fail: each case breaks
// envoy-http.yaml in one way.
func TestHTTPCheckFails(t *testing.T) {
	hcm := []any{"static_resources", "listeners", 0, "filter_chains", 0, "filters", named("envoy.filters.network.http_connection_manager"), "typed_config"}
	extAuthz := join(hcm, "http_filters", named(extAuthzFilter), "typed_config")
	service := join(extAuthz, "http_service")
	response := join(service, "authorization_response")
	routes := join(hcm, "route_config", "virtual_hosts", 0, "routes")
	keygate := []any{"static_resources", "clusters", named("keygate")}
	pattern := func(kind, v string) map[string]any { return map[string]any{kind: v, "ignore_case": true} }

	tests := []struct {
		name   string
		mutate func(tb testing.TB, doc map[string]any)
		want   string
	}{
		{"typo inside http_service", func(tb testing.TB, doc map[string]any) {
			rename(tb, doc, service, "path_prefix", "path_prefx")
		}, `unknown field "path_prefx"`},
		{"fail open", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, extAuthz, "failure_mode_allow", true)
		}, "failure_mode_allow"},
		{"status_on_error not set", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, extAuthz, "status_on_error")
		}, "status_on_error"},
		{"gRPC service instead", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, extAuthz, "http_service")
			set(tb, doc, extAuthz, "grpc_service", map[string]any{"envoy_grpc": map[string]any{"cluster_name": "keygate"}, "timeout": "0.2s"})
		}, "http_service must be set"},
		{"no timeout", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(service, "server_uri"), "timeout")
		}, "HttpUri.Timeout"},
		{"timeout too long", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(service, "server_uri"), "timeout", "2s")
		}, "timeout"},
		{"auth cluster missing", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(service, "server_uri"), "cluster", "keygat")
		}, `unknown cluster "keygat"`},
		{"prefix keygate does not answer", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, service, "path_prefix", "/authz")
		}, "path_prefix"},
		{"key header not sent to keygate", func(tb testing.TB, doc map[string]any) {
			dig(tb, doc, join(extAuthz, "allowed_headers")...).(map[string]any)["patterns"] = []any{pattern("prefix", "x-keygate-")}
		}, "x-api-key"},
		{"forged identity not sent to keygate", func(tb testing.TB, doc map[string]any) {
			dig(tb, doc, join(extAuthz, "allowed_headers")...).(map[string]any)["patterns"] = []any{pattern("exact", "x-api-key")}
		}, "x-keygate-admin"},
		{"deprecated allowed_headers", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, service, "authorization_request", map[string]any{"allowed_headers": map[string]any{"patterns": []any{pattern("exact", "x-api-key")}}})
		}, "deprecated"},
		{"identity not taken from keygate", func(tb testing.TB, doc map[string]any) {
			dig(tb, doc, join(response, "allowed_upstream_headers")...).(map[string]any)["patterns"] = []any{pattern("exact", "x-keygate-key-id")}
		}, "x-keygate-account-id"},
		{"keygate's answer lets anything upstream", func(tb testing.TB, doc map[string]any) {
			dig(tb, doc, join(response, "allowed_upstream_headers")...).(map[string]any)["patterns"] = []any{pattern("prefix", "x-")}
		}, "x-api-key"},
		{"identity appended", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, response, "allowed_upstream_headers_to_append", map[string]any{"patterns": []any{pattern("prefix", "x-keygate-")}})
		}, "append"},
		{"no identity in metadata", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, response, "dynamic_metadata_from_headers")
		}, "dynamic_metadata_from_headers"},
		{"denial headers hidden from the client", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, response, "allowed_client_headers", map[string]any{"patterns": []any{pattern("exact", "content-type")}})
		}, "www-authenticate"},
		{"context extensions, which HTTP mode ignores", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(routes, named("catch-all")), "typed_per_filter_config", map[string]any{
				extAuthzFilter: map[string]any{
					"@type":          "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
					"check_settings": map[string]any{"context_extensions": map[string]any{"module": "projects"}},
				},
			})
		}, "context_extensions"},
		{"normalize_path off", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, hcm, "normalize_path", false)
		}, "normalize_path"},
		{"headers with underscores allowed", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(hcm, "common_http_protocol_options"), "headers_with_underscores_action", "ALLOW")
		}, "headers_with_underscores_action"},
		{"path overrides not sent to keygate", func(tb testing.TB, doc map[string]any) {
			p := dig(tb, doc, join(extAuthz, "allowed_headers")...).(map[string]any)
			p["patterns"] = slices.DeleteFunc(slices.Clone(p["patterns"].([]any)), func(m any) bool { return m.(map[string]any)["exact"] == "x-original-url" })
		}, "does not send x-original-url"},
		{"keygate cluster idle longer than keygate", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(keygate, "typed_extension_protocol_options", http2Options, "common_http_protocol_options"), "idle_timeout", "3600s")
		}, "idle_timeout 1h0m0s"},
		{"keygate cluster with Envoy's idle default", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(keygate, "typed_extension_protocol_options", http2Options), "common_http_protocol_options")
		}, "sets no idle_timeout"},
		{"keygate cluster without readiness check", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, keygate, "health_checks")
		}, "/readyz"},
		{"public route still checked", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(routes, named("public-healthz")), "typed_per_filter_config")
		}, "/healthz"},
		{"public route keeps the bearer credential", func(tb testing.TB, doc map[string]any) {
			r := object(tb, doc, join(routes, named("public-healthz")))
			r["request_headers_to_remove"] = slices.DeleteFunc(slices.Clone(r["request_headers_to_remove"].([]any)), func(h any) bool { return h == "authorization" })
		}, "does not remove authorization"},
		{"merged headers sent to keygate", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, extAuthz, "encode_raw_headers")
		}, "encode_raw_headers"},
		{"no outlier detection", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, keygate, "outlier_detection")
		}, "has no outlier_detection"},
		{"keygate's 503 ejecting replicas", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(keygate, "outlier_detection"), "enforcing_consecutive_5xx")
		}, "enforcing_consecutive_5xx must be 0"},
		{"keygate's 503 ejecting replicas by success rate", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(keygate, "outlier_detection"), "enforcing_success_rate", 100)
		}, "enforcing_success_rate must be 0"},
		{"auth request retried", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, service, "retry_policy", map[string]any{"num_retries": 2})
		}, "http_service.retry_policy"},
		{"access log path with the query", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(hcm, "access_log", 0, "typed_config", "log_format", "json_format"), "path", "%REQ(:PATH)%")
		}, "with its query string"},
	}
	base := mustRead(t, httpConfigFile)
	if err := checkAs(httpConfig, mustJSON(t, mustTree(t, base))); err != nil {
		t.Fatalf("unmodified %s fails after the round trip: %v", httpConfigFile, err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := mustTree(t, base)
			tc.mutate(t, doc)
			err := checkAs(httpConfig, mustJSON(t, doc))
			if err == nil {
				t.Fatalf("check passed; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// The replay of Envoy's header matching is right about the cases the
// assertions rely on.
func TestMatches(t *testing.T) {
	l := &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{
		{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "x-api-key"}, IgnoreCase: true},
		{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "x-keygate-"}},
		{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}},
	}}
	for name, want := range map[string]bool{"x-api-key": true, "X-API-KEY": true, "x-api-keys": false,
		"x-keygate-module": true, "X-Keygate-Module": false, "authorization": false} {
		if got := matches(l, name); got != want {
			t.Errorf("matches(%q) = %v, want %v", name, got, want)
		}
	}
}
