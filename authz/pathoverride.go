package authz

import (
	"strings"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// Path-override headers. Some backends route a request by a header
// instead of its target: IIS's URL Rewrite module passes the original URL
// in X-Original-URL and ISAPI_Rewrite in X-Rewrite-URL, and what ran on
// IIS honours them from any client (Symfony before 2.7.49, 2.8.44,
// 3.3.18, 3.4.14, 4.0.14 and 4.1.3, so Laravel and Drupal of that time;
// Zend Framework 1 and Laminas; Yii; WordPress on IIS); applications
// behind forward-auth proxies read the target from X-Original-URI (nginx's
// auth_request convention) or X-Forwarded-Uri (Traefik's and Caddy's).
// A request that carries one is decided on every target it names as well
// as on its own: each must be a path keygate reads one way, no reading of
// it may land in a closed module, and the key's scopes must cover every
// module its readings land in, for every action the request needs (a
// _method in its query counts). The shipped proxy configurations also
// remove these headers before the upstream.

// pathOverrideHeaders are the headers whose value some backend takes as
// the request target, in lower case.
var pathOverrideHeaders = [...]string{"x-original-url", "x-rewrite-url", "x-original-uri", "x-forwarded-uri"}

// PathOverrideHeaders returns the path-override headers keygate decides
// on, in lower case: a proxy that sends keygate only some headers (Envoy's
// http_service) must send these, and a proxy in front of a backend should
// remove them before the upstream.
func PathOverrideHeaders() []string { return pathOverrideHeaders[:] }

// isPathOverride reports whether header name is a path-override header,
// read as backends may read it (see hasIdentityPrefix).
func isPathOverride(name string) bool {
	return isHeaderOf(name, pathOverrideHeaders[:])
}

// readPathOverride reads the value of a path-override header: the target
// it names, and, when it holds a comma, each part between the commas that
// is a target too (Envoy merges a repeated header with ",", and the backend
// receives each value; a comma inside one path makes parts that are not
// targets, which are left alone).
func (r *Request) readPathOverride(value string) {
	whole := overrideTarget(value)
	r.targets = append(r.targets, whole)
	if strings.IndexByte(value, ',') < 0 {
		return
	}
	for part := range strings.SplitSeq(value, ",") {
		if t := overrideTarget(part); strings.HasPrefix(t, "/") && t != whole {
			r.targets = append(r.targets, t)
		}
	}
}

// readQueryTargets adds to r's targets those that its query names for the
// frameworks that route by the query instead of the path: a rest_route
// (WordPress, on any URL) or _url (Phalcon) parameter whose value, decoded,
// starts with "/" (parameters separated by '&' or ';', names read as
// isParamNamed reads them); and a query that itself starts with "/",
// which CodeIgniter routes "/?/api/v1/users" and "/index.php?/api/v1/users"
// by: up to its first "?", and up to its first "&".
func (r *Request) readQueryTargets() {
	_, query, ok := strings.Cut(r.Path, "?")
	if !ok {
		return
	}
	if strings.HasPrefix(query, "/") {
		whole, _, _ := strings.Cut(query, "?")
		first, _, _ := strings.Cut(whole, "&")
		r.targets = append(r.targets, whole)
		if first != whole {
			r.targets = append(r.targets, first)
		}
	}
	eachQueryParam(r.Path, r.readRoutingParam)
}

// readRoutingParam adds the target of one raw query parameter, if it is a
// routing parameter (see readQueryTargets) naming a path.
func (r *Request) readRoutingParam(param string) {
	name, value, _ := strings.Cut(param, "=")
	if !isParamNamed(name, "rest_route") && !isParamNamed(name, "_url") {
		return
	}
	if value = lenientUnescape(value); strings.HasPrefix(value, "/") {
		r.targets = append(r.targets, value)
	}
}

// lenientUnescape decodes a query value as PHP's urldecode does
// (queryByte), so that a malformed escape stays for the policy to refuse.
func lenientUnescape(v string) string {
	if !strings.ContainsAny(v, "%+") {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); {
		c, n := queryByte(v, i)
		b = append(b, c)
		i += n
	}
	return string(b)
}

// overrideTarget returns the request target that the value of a
// path-override header names: the value, white space trimmed, or the path
// and query of an absolute URL (IIS and ingress controllers send
// "https://host/path?query"; the backends that honour such a value route
// by its path). Anything else is left for the policy to read, or refuse.
func overrideTarget(value string) string {
	v := trimOWS(value)
	if p, ok := policy.PathOfURL(v); ok {
		return p
	}
	return v
}

// overridden is what the targets of a request's path-override headers and
// query reach, by every reading of each.
type overridden struct {
	// restricted: some reading lands in a closed module, or in no module
	// while the policy's default is deny; module names the closed module
	// ("" when only the default denies).
	restricted bool
	module     string
	// modules are the modules whose scopes the key must hold: every
	// Route.Modules ("" for a target in no module: only keys without
	// scopes or with "*" may reach it).
	modules []string
}

// readTargets routes every target r's path-override headers and query
// name; ok is false when one cannot be read one way (an invalid path).
func (s *Server) readTargets(r *Request) (o overridden, ok bool) {
	for _, t := range r.targets {
		route, err := s.policy.Route(t)
		if err != nil {
			return o, false
		}
		if route.Restricted && !o.restricted {
			o.restricted, o.module = true, route.RestrictedModule
		}
		o.modules = append(o.modules, route.Modules...)
	}
	return o, true
}

// targetsDryRun reports whether every module of r's path-override targets
// passed the checks of a request that needs the actions need of key (nil:
// every module failed) or is in dry run (Server.moduleDryRun): every closed
// module some reading of a target lands in, and every module of its
// Route.Modules ("" included: the route module does not cover a target). A
// target that cannot be read is not: its modules are unknown.
func (s *Server) targetsDryRun(r *Request, key *keystore.Record, need actions) bool {
	for _, t := range r.targets {
		route, err := s.routeEvery(t)
		if err != nil {
			return false
		}
		if route.Restricted && !s.policy.DryRun(route.RestrictedModule) {
			return false
		}
		for _, m := range route.Modules {
			if !s.passedOrDryRun(m, key, need) {
				return false
			}
		}
	}
	return true
}
