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

// denial is everything a refusal with one Code sends, built once at start
// and shared by every request (protobuf messages are safe to marshal
// concurrently as long as nobody modifies them).
type denial struct {
	status   int         // HTTP status
	headers  [][2]string // response headers, lower-case names
	body     []byte      // {"error":{"code":…,"message":…}}
	response *response   // the CheckResponse, encoded
}

// errorBody is the JSON body of every denial.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func newDenial(c Code) *denial {
	var b errorBody
	b.Error.Code = c.String()
	b.Error.Message = codeInfo[c].message
	body, err := json.Marshal(b)
	if err != nil {
		panic(err) // constant input
	}
	d := &denial{status: c.HTTPStatus(), body: body, headers: [][2]string{
		{"content-type", "application/json"},
		{"cache-control", "no-store"},
	}}
	switch c {
	case MissingKey:
		d.headers = append(d.headers, [2]string{"www-authenticate", `Bearer realm="api"`})
	case InvalidKey:
		d.headers = append(d.headers, [2]string{"www-authenticate", `Bearer realm="api", error="invalid_token"`})
	case Unavailable:
		d.headers = append(d.headers, [2]string{"retry-after", RetryAfterSeconds})
	}
	headers := make([]*corev3.HeaderValueOption, 0, len(d.headers))
	for _, h := range d.headers {
		headers = append(headers, setHeader(h[0], h[1]))
	}
	d.response = encoded(&authv3.CheckResponse{
		Status: &status.Status{Code: int32(grpcCode(c)), Message: c.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.status)},
			Headers: headers,
			Body:    string(body),
		}},
	})
	return d
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
