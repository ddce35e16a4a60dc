package envoy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ext_authzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/extauthz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// The per-key rate limit example: deploy/ratelimit/envoy.yaml (envoy.yaml
// plus Envoy's rate limit filter) and the envoyproxy/ratelimit
// configuration it asks, deploy/ratelimit/config.yaml.
const (
	rateLimitEnvoyFile  = "../deploy/ratelimit/envoy.yaml"
	rateLimitConfigFile = "../deploy/ratelimit/config.yaml"
	rateLimitFilter     = "envoy.filters.http.ratelimit"
)

// rateLimitConfig is envoy.yaml's flavour for the example: everything
// envoy.yaml is held to holds for it too.
var rateLimitConfig = &flavour{file: rateLimitEnvoyFile, metadata: grpcConfig.metadata, authz: extAuthzAssertions, moduleRoutes: true}

func TestRateLimitConfig(t *testing.T) {
	if err := checkRateLimit(mustRead(t, rateLimitEnvoyFile), mustRead(t, rateLimitConfigFile), goldMetadata(t)); err != nil {
		t.Fatalf("the rate limit example does not pass the check:\n%v", err)
	}
}

// checkRateLimit checks the example: the Envoy bootstrap as envoy.yaml is
// checked, config.yaml as envoyproxy/ratelimit loads it, and the two
// together, replaying what Envoy makes of keygate's dynamic metadata md.
func checkRateLimit(envoyDoc, configDoc []byte, md *structpb.Struct) error {
	bs, err := load(envoyDoc)
	if err != nil {
		return err
	}
	cfg, err := loadRateLimitConfig(configDoc)
	if err != nil {
		return fmt.Errorf("config.yaml: %w", err)
	}
	return errors.Join(append(assertions(bs, rateLimitConfig), rateLimitAssertions(bs, cfg, md)...)...)
}

// goldMetadata is the dynamic metadata keygate itself returns for a key
// tagged tier=gold, from a real Check of the gRPC adapter.
func goldMetadata(tb testing.TB) *structpb.Struct {
	tb.Helper()
	w := authztest.NewWorld(tb)
	h, _ := keystore.NewHasher(nil)
	core, err := authz.NewServer(authz.Config{Lookup: w.Lookup, Policy: policy.Example(), Hasher: h})
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := extauthz.New(core, extauthz.Options{}).Check(context.Background(),
		envoytest.CheckRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Gold.Secret}, map[string]string{"module": "projects"}))
	if err != nil || resp.GetOkResponse() == nil {
		tb.Fatalf("Check with the gold key: %v, %v", resp, err)
	}
	return resp.GetDynamicMetadata()
}

// rateLimitAssertions checks the rate limit parts of bs against cfg: the
// filter's place, domain and service; and for every checked route, that its
// rate limits make, from md, a descriptor cfg has a limit for, one per key
// and tier.
func rateLimitAssertions(bs *bootstrapv3.Bootstrap, cfg *yamlRoot, md *structpb.Struct) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm, err := unpack[*hcmv3.HttpConnectionManager](f.GetTypedConfig())
				if err != nil {
					continue
				}
				where := fmt.Sprintf("listener %q", l.GetName())
				for _, e := range rateLimitFilterAssertions(hcm, clusters, cfg) {
					fail("%s: %v", where, e)
				}
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					for _, e := range routeRateLimitAssertions(vh, cfg, md) {
						fail("%s: virtual host %q: %v", where, vh.GetName(), e)
					}
				}
			}
		}
	}
	return errs
}

// rateLimitFilterAssertions checks the HTTP rate limit filter: one, after
// ext_authz (whose metadata the routes' actions read) and before the
// router; config.yaml's domain; the v3 rate limit service on an HTTP/2
// cluster; a bounded timeout.
func rateLimitFilterAssertions(hcm *hcmv3.HttpConnectionManager, clusters map[string]*clusterv3.Cluster, cfg *yamlRoot) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("rate limit filter: "+format, args...))
	}
	authzAt, rlAt := -1, -1
	var rl *ratelimitv3.RateLimit
	for i, f := range hcm.GetHttpFilters() {
		if _, err := unpack[*ext_authzv3.ExtAuthz](f.GetTypedConfig()); err == nil {
			authzAt = i
		}
		if r, err := unpack[*ratelimitv3.RateLimit](f.GetTypedConfig()); err == nil {
			if rl != nil {
				fail("more than one")
			}
			rl, rlAt = r, i
			if f.GetName() != rateLimitFilter {
				fail("named %q; name it %s", f.GetName(), rateLimitFilter)
			}
		}
	}
	switch {
	case rl == nil:
		fail("none in the HTTP filter chain")
		return errs
	case rlAt < authzAt:
		fail("it comes before ext_authz, so keygate's metadata is not there yet when the routes' actions read it")
	}
	if rl.GetDomain() != cfg.Domain {
		fail("domain %q, but config.yaml's is %q: the service would know no limit", rl.GetDomain(), cfg.Domain)
	}
	svc := rl.GetRateLimitService()
	if svc.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		fail("rate_limit_service.transport_api_version is %s; want V3", svc.GetTransportApiVersion())
	}
	name := svc.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if c, ok := clusters[name]; !ok {
		fail("rate_limit_service names cluster %q, which does not exist", name)
	} else if opts, err := unpack[*upstreamhttpv3.HttpProtocolOptions](c.GetTypedExtensionProtocolOptions()[http2Options]); err != nil ||
		opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		fail("cluster %q must speak HTTP/2 (gRPC)", name)
	}
	if d := rl.GetTimeout().AsDuration(); d <= 0 || d > maxTimeout {
		fail("timeout %v; want more than 0 and at most %v", d, maxTimeout)
	}
	return errs
}

// routeRateLimitAssertions checks that every route keygate allows requests
// on (checked, in no module closed to API keys) limits them per key: each
// tier keygate may return (and none) gives a descriptor that names the
// key and that config.yaml limits.
func routeRateLimitAssertions(vh *routev3.VirtualHost, cfg *yamlRoot, md *structpb.Struct) []error {
	var errs []error
	pol := policy.Example()
	tiers := []string{"gold", "silver", "bronze", ""} // "": the key has no tier
	for i, r := range vh.GetRoutes() {
		per, err := perRoute(r)
		if err != nil || per.GetDisabled() {
			continue // reported elsewhere, or public: no key
		}
		if m := per.GetCheckSettings().GetContextExtensions()["module"]; m != "" {
			if _, access, _ := pol.Access(m); access != policy.AccessAllow {
				continue // keygate allows no request there
			}
		}
		at := fmt.Sprintf("route %d (%q)", i, r.GetName())
		limits := r.GetRoute().GetRateLimits()
		if len(limits) == 0 {
			errs = append(errs, fmt.Errorf("%s: no rate_limits: requests keygate allows there are not limited", at))
			continue
		}
		for _, tier := range tiers {
			meta := withTier(md, tier)
			keyID := meta.GetFields()["key_id"].GetStringValue()
			limited := false
			for j, rl := range limits {
				desc, ok, err := descriptorFor(rl, meta)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: rate_limits[%d]: %v", at, j, err))
					continue
				}
				if !ok {
					continue
				}
				if !slices.Contains(desc, descriptorEntry{"key_id", keyID}) {
					errs = append(errs, fmt.Errorf("%s: rate_limits[%d] makes %v, which does not name the key (key_id %s): keys would share one budget", at, j, desc, keyID))
				}
				if tier != "" && !slices.Contains(desc, descriptorEntry{"tier", tier}) {
					errs = append(errs, fmt.Errorf("%s: rate_limits[%d] makes %v, which does not carry the key's tier %q (meta.tier)", at, j, desc, tier))
				}
				if cfg.limit(desc) != nil {
					limited = true
				}
			}
			if !limited {
				errs = append(errs, fmt.Errorf("%s: a key with tier %q gets no limit from config.yaml", at, tier))
			}
		}
	}
	return errs
}

// withTier is md with meta.tier set to tier ("": removed).
func withTier(md *structpb.Struct, tier string) *structpb.Struct {
	out, _ := structpb.NewStruct(md.AsMap())
	meta := out.GetFields()["meta"].GetStructValue()
	if meta == nil {
		meta = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		out.Fields["meta"] = structpb.NewStructValue(meta)
	}
	delete(meta.Fields, "tier")
	if tier != "" {
		meta.Fields["tier"] = structpb.NewStringValue(tier)
	}
	return out
}

// descriptorEntry is one entry of a rate limit descriptor.
type descriptorEntry struct{ key, value string }

// descriptorFor replays what Envoy makes of one rate limit from the
// dynamic metadata md that ext_authz filed: ok is false when some action
// produces no entry (Envoy then sends no descriptor for it). It knows
// metadata actions on the ext_authz namespace, which is all the example
// uses, and refuses any other action rather than guess.
func descriptorFor(rl *routev3.RateLimit, md *structpb.Struct) (desc []descriptorEntry, ok bool, err error) {
	for i, a := range rl.GetActions() {
		m := a.GetMetadata()
		if m == nil {
			return nil, false, fmt.Errorf("actions[%d]: %T cannot be replayed by this test", i, a.GetActionSpecifier())
		}
		if m.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC {
			return nil, false, fmt.Errorf("actions[%d]: metadata source %s; keygate's metadata is DYNAMIC", i, m.GetSource())
		}
		if ns := m.GetMetadataKey().GetKey(); ns != extAuthzFilter {
			return nil, false, fmt.Errorf("actions[%d]: reads metadata namespace %q; keygate's is %s", i, ns, extAuthzFilter)
		}
		v := structpb.NewStructValue(md)
		for _, seg := range m.GetMetadataKey().GetPath() {
			v = v.GetStructValue().GetFields()[seg.GetKey()]
		}
		value := v.GetStringValue()
		if value == "" {
			value = m.GetDefaultValue()
		}
		if value == "" {
			return nil, false, nil
		}
		desc = append(desc, descriptorEntry{m.GetDescriptorKey(), value})
	}
	return desc, len(desc) > 0, nil
}

// yamlRoot and yamlDescriptor are envoyproxy/ratelimit's configuration
// file (src/config/config_impl.go), every field of it.
type yamlRoot struct {
	Domain      string           `json:"domain"`
	Descriptors []yamlDescriptor `json:"descriptors"`
}

type yamlDescriptor struct {
	Key            string           `json:"key"`
	Value          string           `json:"value"`
	RateLimit      *yamlRateLimit   `json:"rate_limit"`
	Descriptors    []yamlDescriptor `json:"descriptors"`
	ShadowMode     bool             `json:"shadow_mode"`
	DetailedMetric bool             `json:"detailed_metric"`
}

type yamlRateLimit struct {
	RequestsPerUnit uint32 `json:"requests_per_unit"`
	Unit            string `json:"unit"`
	Unlimited       bool   `json:"unlimited"`
	Name            string `json:"name"`
	Replaces        []struct {
		Name string `json:"name"`
	} `json:"replaces"`
}

// rateLimitUnits are the units the service accepts (its proto's, lower
// case as the files spell them).
var rateLimitUnits = []string{"second", "minute", "hour", "day", "week", "month", "year"}

// loadRateLimitConfig decodes config.yaml strictly (an unknown key is an
// error, as it is to the service) and applies the service's checks: a
// domain, a key on every descriptor, a valid unit unless unlimited, no
// composite key twice.
func loadRateLimitConfig(doc []byte) (*yamlRoot, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	var root yamlRoot
	dec := newStrictDecoder(js)
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	if root.Domain == "" {
		return nil, errors.New("no domain")
	}
	var errs []error
	var check func(prefix string, ds []yamlDescriptor)
	check = func(prefix string, ds []yamlDescriptor) {
		seen := map[string]bool{}
		for _, d := range ds {
			if d.Key == "" {
				errs = append(errs, fmt.Errorf("%s: a descriptor has an empty key", prefix))
				continue
			}
			key := d.Key
			if d.Value != "" {
				key += "_" + d.Value
			}
			if seen[key] {
				errs = append(errs, fmt.Errorf("%s: duplicate descriptor composite key %q", prefix, key))
			}
			seen[key] = true
			if rl := d.RateLimit; rl != nil {
				valid := slices.Contains(rateLimitUnits, strings.ToLower(rl.Unit))
				switch {
				case rl.Unlimited && valid:
					errs = append(errs, fmt.Errorf("%s%s: a unit with unlimited", prefix, key))
				case !rl.Unlimited && !valid:
					errs = append(errs, fmt.Errorf("%s%s: invalid rate limit unit %q (want one of %v)", prefix, key, rl.Unit, rateLimitUnits))
				case !rl.Unlimited && rl.RequestsPerUnit == 0:
					errs = append(errs, fmt.Errorf("%s%s: requests_per_unit 0 refuses every request", prefix, key))
				}
			}
			check(prefix+key+".", d.Descriptors)
		}
	}
	check(root.Domain+".", root.Descriptors)
	return &root, errors.Join(errs...)
}

// limit replays the service's lookup (GetLimit): at each level the entry's
// key_value, else its key alone; the limit of the last level matched, if
// the descriptor ends there.
func (r *yamlRoot) limit(desc []descriptorEntry) *yamlRateLimit {
	level := r.Descriptors
	var found *yamlRateLimit
	for i, e := range desc {
		next := findDescriptor(level, e.key, e.value)
		if next == nil {
			next = findDescriptor(level, e.key, "")
		}
		if next == nil {
			return found
		}
		if next.RateLimit != nil && i == len(desc)-1 {
			found = next.RateLimit
		}
		if len(next.Descriptors) == 0 {
			return found
		}
		level = next.Descriptors
	}
	return found
}

func findDescriptor(ds []yamlDescriptor, key, value string) *yamlDescriptor {
	for i := range ds {
		if ds[i].Key == key && ds[i].Value == value {
			return &ds[i]
		}
	}
	return nil
}

// TestRateLimitCheckFails proves the check can fail: each case breaks the
// example in one way.
func TestRateLimitCheckFails(t *testing.T) {
	hcm := []any{"static_resources", "listeners", 0, "filter_chains", 0, "filters", named("envoy.filters.network.http_connection_manager"), "typed_config"}
	rl := join(hcm, "http_filters", named(rateLimitFilter), "typed_config")
	routes := join(hcm, "route_config", "virtual_hosts", 0, "routes")
	projects := join(routes, named("module-projects"), "route")
	tierAction := join(projects, "rate_limits", 0, "actions", 0, "metadata")
	envoyBase, configBase := mustRead(t, rateLimitEnvoyFile), mustRead(t, rateLimitConfigFile)
	md := goldMetadata(t)

	envoyCases := []struct {
		name   string
		mutate func(tb testing.TB, doc map[string]any)
		want   string
	}{
		{"rate limit filter before ext_authz", func(tb testing.TB, doc map[string]any) {
			m := object(tb, doc, hcm)
			f := m["http_filters"].([]any)
			m["http_filters"] = append([]any{f[1], f[0]}, f[2:]...)
		}, "before ext_authz"},
		{"another domain", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, rl, "domain", "edge")
		}, `domain "edge"`},
		{"tier read from the wrong place", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(tierAction, "metadata_key"), "path", []any{map[string]any{"key": "tier"}})
		}, `does not carry the key's tier "gold"`},
		{"no key id in the descriptor", func(tb testing.TB, doc map[string]any) {
			a := object(tb, doc, join(projects, "rate_limits", 0))
			a["actions"] = a["actions"].([]any)[:1]
		}, "does not name the key"},
		{"catch-all without rate limits", func(tb testing.TB, doc map[string]any) {
			remove(tb, doc, join(routes, named("catch-all"), "route"), "rate_limits")
		}, "no rate_limits"},
		{"metadata from the route entry", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, tierAction, "source", "ROUTE_ENTRY")
		}, "DYNAMIC"},
		{"unknown rate limit service cluster", func(tb testing.TB, doc map[string]any) {
			set(tb, doc, join(rl, "rate_limit_service", "grpc_service", "envoy_grpc"), "cluster_name", "rls")
		}, `cluster "rls"`},
	}
	configCases := []struct {
		name   string
		mutate func(doc map[string]any)
		want   string
	}{
		{"a key the service does not know", func(doc map[string]any) {
			d := doc["descriptors"].([]any)[0].(map[string]any)["descriptors"].([]any)[0].(map[string]any)
			d["rate_limit"].(map[string]any)["requests_per_minute"] = 5
		}, "requests_per_minute"},
		{"an invalid unit", func(doc map[string]any) {
			d := doc["descriptors"].([]any)[0].(map[string]any)["descriptors"].([]any)[0].(map[string]any)
			d["rate_limit"].(map[string]any)["unit"] = "fortnight"
		}, "fortnight"},
		{"no default tier", func(doc map[string]any) {
			doc["descriptors"] = doc["descriptors"].([]any)[:2]
		}, `tier "bronze" gets no limit`},
		{"a tier twice", func(doc map[string]any) {
			doc["descriptors"] = append(doc["descriptors"].([]any), doc["descriptors"].([]any)[0])
		}, "duplicate descriptor"},
	}

	if err := checkRateLimit(mustJSON(t, mustTree(t, envoyBase)), mustJSON(t, mustTree(t, configBase)), md); err != nil {
		t.Fatalf("the unmodified example fails after the round trip: %v", err)
	}
	run := func(t *testing.T, envoyDoc, configDoc []byte, want string) {
		err := checkRateLimit(envoyDoc, configDoc, md)
		if err == nil {
			t.Fatalf("check passed; want an error containing %q", want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check error does not mention %q:\n%v", want, err)
		}
	}
	for _, tc := range envoyCases {
		t.Run(tc.name, func(t *testing.T) {
			doc := mustTree(t, envoyBase)
			tc.mutate(t, doc)
			run(t, mustJSON(t, doc), configBase, tc.want)
		})
	}
	for _, tc := range configCases {
		t.Run(tc.name, func(t *testing.T) {
			doc := mustTree(t, configBase)
			tc.mutate(doc)
			run(t, envoyBase, mustJSON(t, doc), tc.want)
		})
	}
}

// newStrictDecoder decodes JSON refusing unknown fields.
func newStrictDecoder(js []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec
}
