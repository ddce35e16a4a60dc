package main

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// identityKeyID stands for a seeded key's id in the identity answers: a
// UUID, as long as every key id.
const identityKeyID = "019aee3c-1b6f-7c33-9a52-5c1e3b1f2a47"

// emptyAllow is the reference servers' allow by default: status OK and
// nothing else.
var emptyAllow = &authv3.CheckResponse{Status: &status.Status{}}

// identityAllow is keygate's gRPC allow for a seeded key (no scopes,
// limits or metadata; the example policy's projects module), its key id
// aside: what the reference servers answer with --grpc-reference
// identity. each checks that keygate's answers are this (sameAllow).
var identityAllow = &authv3.CheckResponse{
	Status: &status.Status{},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{
			setHeader("x-keygate-key-id", identityKeyID),
			setHeader("x-keygate-account-id", "keygate-bench"),
			setHeader("x-keygate-module", "projects"),
		},
		HeadersToRemove: []string{"x-keygate-scopes", "x-api-key"},
	}},
	DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		"key_id":     structpb.NewStringValue(identityKeyID),
		"account_id": structpb.NewStringValue("keygate-bench"),
		"module":     structpb.NewStringValue("projects"),
	}},
}

func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

// sameAllow checks that an allow is identityAllow but for the key id:
// keygate's, so that --grpc-reference identity answers as much, and the
// reference's own, so that it answers no less.
func sameAllow(r *authv3.CheckResponse) error {
	got := proto.Clone(r).(*authv3.CheckResponse)
	for _, h := range got.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "x-keygate-key-id" {
			h.Header.Value = identityKeyID
		}
	}
	if _, ok := got.GetDynamicMetadata().GetFields()["key_id"]; ok {
		got.DynamicMetadata.Fields["key_id"] = structpb.NewStringValue(identityKeyID)
	}
	if !proto.Equal(got, identityAllow) {
		return fmt.Errorf("the allow is {%s}, where --grpc-reference identity expects {%s}",
			prototext.MarshalOptions{}.Format(got), prototext.MarshalOptions{}.Format(identityAllow))
	}
	return nil
}
