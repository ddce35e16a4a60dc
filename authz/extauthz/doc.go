// Package extauthz is Envoy's gRPC ext_authz adapter: it answers
// envoy.service.auth.v3.Authorization/Check with the decisions of an
// authz.Server.
//
// It translates and nothing more: a CheckRequest becomes an authz.Request
// (the method and path, with the :method and :path pseudo-headers as a
// fallback; every header, from the headers map or, with Envoy's
// encode_raw_headers, from header_map; the source address; and the
// route's context_extensions["module"]), and the authz.Decision becomes a
// CheckResponse: an allow is an ok_response that sets the identity headers
// with OVERWRITE_IF_EXISTS_OR_ADD, lists the credential and forged
// identity headers in headers_to_remove, and carries key_id, account_id
// and module in dynamic_metadata; a denial is a denied_response with the
// core's status, headers and JSON body, and the outcome's gRPC status.
//
// # Errors
//
// Check never returns a gRPC error: a store failure, a timeout or a
// recovered panic is a 503 CheckResponse, so that keygate fails closed
// whatever the filter's failure_mode_allow says.
//
// # Speed
//
// Denials, and allows for requests without forged identity headers, are
// immutable responses built and encoded once and shared (authz.Grants);
// NewGRPCServer's codec sends their bytes as they are, so that the cached
// decision path allocates nothing of its own.
//
// The codec also reads a CheckRequest without building it: decodeView
// takes the fields a decision reads straight from the wire (strings point
// into one copy of the message), checking the whole message as
// proto.Unmarshal would (wire format, UTF-8 of every string field) and
// reading it as proto.Unmarshal would (repeated messages merge, a map keeps
// a name's last entry, a oneof member replaces another). What it does not
// mirror exactly it leaves to proto.Unmarshal; FuzzDecodeView holds the
// two to the same reading. Interceptors see an empty CheckRequest then.
package extauthz
