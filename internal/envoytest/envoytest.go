package envoytest

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// CheckRequest is a request for method and path with Envoy's headers map:
// the headers a typical SDK sends (twelve with the pseudo-headers), with
// headers added or replacing them. contextExtensions may be nil.
func CheckRequest(method, path string, headers, contextExtensions map[string]string) *authv3.CheckRequest {
	h := map[string]string{
		":authority":                     "api.example.com",
		":method":                        method,
		":path":                          path,
		":scheme":                        "https",
		"accept":                         "application/json",
		"accept-encoding":                "gzip, br",
		"user-agent":                     "example-sdk/2.3.1 go1.26",
		"x-forwarded-proto":              "https",
		"x-forwarded-for":                "203.0.113.7",
		"x-request-id":                   "5f0b0a58-6a55-4a8e-9a53-0c8e0f8f3e1d",
		"x-envoy-expected-rq-timeout-ms": "15000",
		"content-type":                   "application/json",
	}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      peer("10.0.3.17", 51234),
		Destination: peer("10.0.1.5", 8080),
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       "14877394212342345",
				Method:   method,
				Headers:  h,
				Path:     path,
				Host:     "api.example.com",
				Scheme:   "https",
				Protocol: "HTTP/1.1",
			},
		},
		ContextExtensions: contextExtensions,
	}}
}

// RawCheckRequest is CheckRequest as Envoy sends it with
// encode_raw_headers on: header_map with repeated headers kept apart and
// values in raw_value, and no headers map.
func RawCheckRequest(method, path string, headers [][2]string) *authv3.CheckRequest {
	req := CheckRequest(method, path, nil, nil)
	hm := &corev3.HeaderMap{}
	for _, h := range append([][2]string{{":method", method}, {":path", path}, {":authority", "api.example.com"}}, headers...) {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
	}
	http := req.Attributes.Request.Http
	http.Headers = nil
	http.HeaderMap = hm
	return req
}

func peer(addr string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}
}
