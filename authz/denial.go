package authz

import (
	"encoding/json"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// RetryAfterSeconds is the Retry-After of a 503: the store usually comes
// back, or the key gets cached, within seconds.
const RetryAfterSeconds = "2"

// errorBody is the JSON body of every denial.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// newDenial builds the refusal with one Code: status, JSON body and
// headers, built and encoded once at start and shared by every request
// (protobuf messages are safe to marshal concurrently as long as nobody
// modifies them).
func newDenial(c Code) *response {
	var b errorBody
	b.Error.Code = c.String()
	b.Error.Message = codeInfo[c].message
	body, err := json.Marshal(b)
	if err != nil {
		panic(err) // constant input
	}
	headers := []*corev3.HeaderValueOption{
		setHeader("content-type", "application/json"),
		setHeader("cache-control", "no-store"),
	}
	switch c {
	case MissingKey:
		headers = append(headers, setHeader("www-authenticate", `Bearer realm="api"`))
	case InvalidKey:
		headers = append(headers, setHeader("www-authenticate", `Bearer realm="api", error="invalid_token"`))
	case Unavailable:
		headers = append(headers, setHeader("retry-after", RetryAfterSeconds))
	}
	return encoded(&authv3.CheckResponse{
		Status: &status.Status{Code: int32(grpcCode(c)), Message: c.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(c.HTTPStatus())},
			Headers: headers,
			Body:    string(body),
		}},
	})
}

// grpcCode is the CheckResponse status of an outcome.
func grpcCode(c Code) codes.Code {
	switch c {
	case Allow:
		return codes.OK
	case MissingKey, InvalidKey:
		return codes.Unauthenticated
	case InvalidPath:
		return codes.InvalidArgument
	case ModuleForbidden, InsufficientScope:
		return codes.PermissionDenied
	}
	return codes.Unavailable
}

// setHeader is a header mutation that replaces any existing value: Envoy
// versions differ on the default append action, so it is always explicit.
func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
