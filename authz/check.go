package authz

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// MetadataNamespace is where Envoy files the dynamic metadata of an
// ext_authz response; access logs and rate-limit descriptors read key_id,
// account_id and module from it.
const MetadataNamespace = "envoy.filters.http.ext_authz"

var okStatus = &status.Status{}

// Check answers Envoy's ext_authz Check. Every outcome, including a store
// failure or a recovered panic, is a CheckResponse, never a gRPC error, so
// that keygate fails closed whatever the filter's failure_mode_allow says.
// The response is the caller's to keep and change (NewGRPCServer's
// service shares and pre-encodes responses instead).
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return proto.Clone(s.respond(ctx, req).msg).(*authv3.CheckResponse), nil
}

// respond decides and returns the response, encoded already when it is one
// of the shared ones.
func (s *Server) respond(ctx context.Context, req *authv3.CheckRequest) (resp *response) {
	start := s.now()
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("recovered from a panic in Check; denying", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			s.metrics.observe(Unavailable, ReasonPanic, start)
			resp = s.denials[Unavailable]
		}
	}()
	var sc headerScan
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	if raw := httpReq.GetHeaderMap().GetHeaders(); len(raw) > 0 {
		for _, h := range raw {
			v := h.GetValue()
			if len(h.GetRawValue()) > 0 {
				v = string(h.GetRawValue())
			}
			s.scanHeader(&sc, lowerASCII(h.GetKey()), v)
		}
	} else {
		for k, v := range httpReq.GetHeaders() {
			s.scanHeader(&sc, lowerASCII(k), v)
		}
	}
	r := request{
		at:     start,
		method: httpReq.GetMethod(),
		path:   httpReq.GetPath(),
		module: req.GetAttributes().GetContextExtensions()["module"],
		cred:   sc.cred,
	}
	if r.method == "" {
		r.method = sc.method
	}
	if r.path == "" {
		r.path = sc.path
	}
	d := s.decide(ctx, &r)
	s.finish(ctx, &d, start)
	if d.Code != Allow {
		return s.denials[d.Code]
	}
	return s.okResponse(&d, &sc)
}

// finish records a decision: metrics, the debug log, and last use.
func (s *Server) finish(ctx context.Context, d *Decision, start time.Time) {
	s.metrics.observe(d.Code, d.Reason, start)
	if d.Code == Allow && s.usage != nil {
		s.usage.Used(d.Key.ID, start)
	}
	if s.logger.Enabled(ctx, slog.LevelDebug) {
		attrs := []slog.Attr{slog.String("code", d.Code.String()), slog.String("reason", d.Reason.String()),
			slog.String("module", d.Module)}
		if d.Key != nil {
			attrs = append(attrs, slog.String("key_id", d.Key.ID), slog.String("account_id", d.Key.AccountID))
		}
		s.logger.LogAttrs(ctx, slog.LevelDebug, "decision", attrs...)
	}
}

// grantKey identifies an allow response that does not depend on anything
// else in the request: the key record's id and version (every lifecycle
// change gives a new version, and a record read again at the same version
// is the same record), the module, and which headers carried the key.
type grantKey struct {
	keyID    string
	version  int64 // UpdatedAt in unix microseconds
	module   string
	carriers uint8
}

// grantCacheSize bounds the remembered allow responses (about 2 KB each,
// BenchmarkGrantMemory).
const grantCacheSize = 16 << 10

// okResponse lets the request through with the key's identity set on it,
// the credential removed, and any client-sent identity header dropped.
// Responses are immutable, encoded once and shared: the common case (no
// forged identity headers) costs a map lookup instead of building and
// encoding some twenty messages.
func (s *Server) okResponse(d *Decision, sc *headerScan) *response {
	if len(sc.spoofed) > 0 {
		return &response{msg: s.buildOK(d, sc)}
	}
	gk := grantKey{keyID: d.Key.ID, version: d.Key.UpdatedAt.UnixMicro(), module: d.Module, carriers: sc.cred.carriers}
	if resp, ok := s.grants.GetIfPresent(gk); ok {
		return resp
	}
	resp := encoded(s.buildOK(d, sc))
	s.grants.Set(gk, resp)
	return resp
}

// buildOK builds an allow response.
func (s *Server) buildOK(d *Decision, sc *headerScan) *authv3.CheckResponse {
	k := d.Key
	headers := make([]*corev3.HeaderValueOption, 0, 4)
	var remove []string
	headers = append(headers, setHeader(s.names.keyID, k.ID), setHeader(s.names.accountID, k.AccountID))
	set := func(name, value string) {
		if value == "" {
			remove = append(remove, name)
		} else {
			headers = append(headers, setHeader(name, value))
		}
	}
	set(s.names.scopes, strings.Join(k.Scopes, ","))
	set(s.names.module, d.Module)
	if !s.keepCredentials {
		for i := range s.keyHeaders {
			if sc.cred.carriers&(1<<i) != 0 {
				remove = append(remove, s.keyHeaders[i].name)
			}
		}
	}
	for _, name := range sc.spoofed {
		switch name {
		case s.names.keyID, s.names.accountID, s.names.scopes, s.names.module:
			// set (and so overwritten) above, or already listed
		default:
			remove = append(remove, name)
		}
	}
	return &authv3.CheckResponse{
		Status: okStatus,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         headers,
			HeadersToRemove: remove,
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"key_id":     structpb.NewStringValue(k.ID),
			"account_id": structpb.NewStringValue(k.AccountID),
			"module":     structpb.NewStringValue(d.Module),
		}},
	}
}
