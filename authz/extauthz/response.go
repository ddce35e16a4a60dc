package extauthz

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/authz"
)

// MetadataNamespace is where Envoy files the dynamic metadata of an
// ext_authz response; access logs and rate-limit descriptors read key_id,
// account_id and module from it, and the key's metadata from its "meta"
// struct (meta.tier).
const MetadataNamespace = "envoy.filters.http.ext_authz"

// response is a CheckResponse, with its wire encoding when it is shared by
// many requests (denials, and allows without forged identity headers), so
// that it is encoded once rather than once per request. It is a
// proto.Message (the embedded response's), so that interceptors and stats
// handlers can read it; nothing may modify it.
type response struct {
	*authv3.CheckResponse
	wire []byte // nil: encode the message when sending
}

// encoded returns m with its wire encoding.
func encoded(m *authv3.CheckResponse) *response {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic("extauthz: encoding a CheckResponse: " + err.Error()) // well-formed by construction
	}
	return &response{CheckResponse: m, wire: b}
}

// denied renders the core's refusal as a CheckResponse: built and encoded
// once at start and shared by every request (protobuf messages are safe to
// marshal concurrently as long as nobody modifies them).
func denied(d *authz.Denial) *response {
	headers := make([]*corev3.HeaderValueOption, 0, len(d.Headers))
	for _, h := range d.Headers {
		headers = append(headers, setHeader(h.Name, h.Value))
	}
	return encoded(&authv3.CheckResponse{
		Status: &status.Status{Code: int32(d.Outcome.GRPCCode()), Message: d.Outcome.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
			Headers: headers,
			Body:    d.Body,
		}},
	})
}

var okStatus = &status.Status{}

// allowed renders an allow (or a dry-run denial): the identity headers
// set (an empty one removed, so that a client-sent copy cannot survive),
// the credential and forged identity headers removed, and the identity in
// dynamic metadata (with dry_run, the outcome not enforced). Shared
// renderings (authz.Grants) are encoded once.
func (s *Server) allowed(d authz.Decision) *response {
	id := s.core.Identity(&d)
	headers := make([]*corev3.HeaderValueOption, 0, len(id.Headers)+len(id.Meta))
	var remove []string
	for i, h := range id.Headers {
		switch {
		case h.Value != "":
			headers = append(headers, setHeader(h.Name, h.Value))
		case i != authz.IdentityDryRun: // a forged one is in id.Remove
			remove = append(remove, h.Name)
		}
	}
	for _, h := range id.Meta {
		if h.Value != "" {
			headers = append(headers, setHeader(h.Name, h.Value))
		} else {
			remove = append(remove, h.Name)
		}
	}
	m := &authv3.CheckResponse{
		Status: okStatus,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         headers,
			HeadersToRemove: append(remove, id.Remove...),
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"key_id":     structpb.NewStringValue(id.Headers[authz.IdentityKeyID].Value),
			"account_id": structpb.NewStringValue(id.Headers[authz.IdentityAccountID].Value),
			"module":     structpb.NewStringValue(d.Module),
		}},
	}
	if d.DryRun {
		m.DynamicMetadata.Fields["dry_run"] = structpb.NewStringValue(d.Outcome.String())
	}
	if d.Key != nil {
		meta := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for k, v := range d.Key.Metadata() {
			meta.Fields[k] = structpb.NewStringValue(v)
		}
		if len(meta.Fields) > 0 {
			m.DynamicMetadata.Fields["meta"] = structpb.NewStructValue(meta)
		}
	}
	if d.Forged() {
		return &response{CheckResponse: m} // this request's own: not worth encoding ahead
	}
	return encoded(m)
}

// setHeader is a header mutation that replaces any existing value: Envoy
// versions differ on the default append action, so it is always explicit.
func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// limitedDenial is the denial of a key with limits: the shared denial
// with its RateLimit fields and Retry-After added (built per request; only
// limited keys pay for it).
func (s *Server) limitedDenial(d *authz.Decision) *response {
	shared := s.denials[d.Outcome].GetDeniedResponse()
	headers := append([]*corev3.HeaderValueOption(nil), shared.GetHeaders()...)
	for _, f := range s.core.LimitHeaders(d) {
		headers = append(headers, setHeader(f.Name, f.Value))
	}
	return &response{CheckResponse: &authv3.CheckResponse{
		Status: s.denials[d.Outcome].Status,
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: shared.GetStatus(), Headers: headers, Body: shared.GetBody(),
		}},
	}}
}

// limitedAllow is the allow g of a key with limits, with its RateLimit
// fields added to the client's response (response_headers_to_add): g's
// parts are shared, never modified.
func (s *Server) limitedAllow(g *response, d *authz.Decision) *response {
	fields := s.core.LimitHeaders(d)
	if len(fields) == 0 {
		return g
	}
	ok := g.GetOkResponse()
	add := make([]*corev3.HeaderValueOption, 0, len(fields))
	for _, f := range fields {
		add = append(add, setHeader(f.Name, f.Value))
	}
	return &response{CheckResponse: &authv3.CheckResponse{
		Status:          g.Status,
		DynamicMetadata: g.DynamicMetadata,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: ok.GetHeaders(), HeadersToRemove: ok.GetHeadersToRemove(), ResponseHeadersToAdd: add,
		}},
	}}
}
