package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
)

// Server answers Check with the decisions of an authz.Server. It is safe
// for concurrent use.
type Server struct {
	core     *authz.Server
	logger   *slog.Logger
	trustXFF bool
	xffHops  int
	grants   *authz.Grants[*response]
	denials  [authz.NumOutcomes]*response // prebuilt, shared, never modified
}

// Options configure a Server; the zero value selects the defaults.
type Options struct {
	// Logger learns of recovered panics. Default: discard.
	Logger *slog.Logger
	// TrustXFF takes the client's address from X-Forwarded-For, as Envoy
	// does with xff_num_trusted_hops set to XFFTrustedHops: the entry
	// XFFTrustedHops+1 from the right (Envoy's own peer, when it appends
	// it, is the rightmost), or source.address when the header has fewer
	// entries. Set both to what Envoy's HTTP connection manager says.
	// Default: the client is source.address, Envoy's downstream peer.
	TrustXFF       bool
	XFFTrustedHops int
}

// New returns a Server deciding with core.
func New(core *authz.Server, opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{core: core, logger: logger, trustXFF: opts.TrustXFF, xffHops: max(0, opts.XFFTrustedHops),
		grants: authz.NewGrants[*response]()}
	for o := range authz.NumOutcomes {
		s.denials[o] = denied(core.Denial(authz.Outcome(o)))
	}
	return s
}

// Check answers Envoy's ext_authz Check. Every outcome, including a store
// failure or a recovered panic, is a CheckResponse, never a gRPC error, so
// that keygate fails closed whatever the filter's failure_mode_allow says.
// The response is the caller's to keep and change (NewGRPCServer's service
// shares and pre-encodes responses instead).
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	var v requestView
	viewOf(req, &v)
	return proto.Clone(s.respond(ctx, &v).CheckResponse).(*authv3.CheckResponse), nil
}

// respond decides and returns the response, encoded already when it is one
// of the shared ones.
func (s *Server) respond(ctx context.Context, req *requestView) (resp *response) {
	defer func() {
		// The decision recovers its own panics; this is for the
		// translation around it.
		if p := recover(); p != nil {
			s.logger.Error("recovered from a panic in Check; denying", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			resp = s.denials[authz.Unavailable]
		}
	}()
	var r authz.Request
	s.read(&r, req)
	d := s.core.Decide(ctx, &r)
	if d.Denied() {
		if d.Limits != nil {
			return s.limitedDenial(&d)
		}
		return s.denials[d.Outcome]
	}
	g := s.grants.Get(&d, s.allowed)
	if d.Limits != nil {
		return s.limitedAllow(g, &d)
	}
	return g
}

// undecodable answers a CheckRequest that could not be decoded: a 400
// invalid_request denial, counted like any decision.
func (s *Server) undecodable(ctx context.Context) *response {
	return s.denials[s.core.Refuse(ctx, &authz.Request{}, authz.ReasonUndecodable).Outcome]
}

// read translates a CheckRequest's view into r.
func (s *Server) read(r *authz.Request, req *requestView) {
	var method, path string // the pseudo-headers: the fallback for an empty method or path
	var xff forwardedFor
	for _, h := range req.fields() {
		name, value := h.name, h.value
		if len(name) > 0 && name[0] == ':' {
			switch name {
			case ":method":
				method = value
			case ":path":
				path = value
			}
			continue
		}
		if s.trustXFF && len(name) == len("x-forwarded-for") && strings.EqualFold(name, "x-forwarded-for") {
			xff.add(value)
		}
		s.core.ReadHeader(r, name, value)
	}
	r.Method, r.Path = req.method, req.path
	if r.Method == "" {
		r.Method = method
	}
	if r.Path == "" {
		r.Path = path
	}
	r.Module = req.module
	if a, err := netip.ParseAddr(req.source); err == nil {
		r.Source = a.Unmap()
	}
	if s.trustXFF {
		if a, ok := xff.client(s.xffHops); ok {
			r.Source = a
		}
	}
}
