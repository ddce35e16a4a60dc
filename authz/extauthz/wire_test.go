package extauthz

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// sameView compares views as read decides on them: the headers map as a
// set of names, header_map in order.
func sameView(t *testing.T, fast, slow *requestView) {
	t.Helper()
	norm := func(v *requestView) requestView {
		c := *v
		c.headers = slices.Clone(v.headers)
		slices.SortFunc(c.headers, func(a, b headerField) int { return strings.Compare(a.name, b.name) })
		if len(c.headers) == 0 {
			c.headers = nil
		}
		if len(c.headerMap) == 0 {
			c.headerMap = nil
		}
		return c
	}
	if diff := cmp.Diff(norm(slow), norm(fast), cmp.AllowUnexported(requestView{}, headerField{})); diff != "" {
		t.Fatalf("decodeView differs from proto.Unmarshal (-proto +decodeView):\n%s", diff)
	}
}

// checkDecode is the property decodeView keeps for any input b: when it
// reads b, proto.Unmarshal reads b too, and the views are the same.
func checkDecode(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	var got requestView
	fast = decodeView(bytes.Clone(b), &got)
	var req authv3.CheckRequest
	err := proto.Unmarshal(b, &req)
	if !fast {
		return false
	}
	if err != nil {
		t.Fatalf("decodeView read what proto.Unmarshal refuses (%v): %x", err, b)
	}
	var want requestView
	viewOf(&req, &want)
	sameView(t, &got, &want)
	return true
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The schema is one decodeView reads, and what Envoy sends is read by it
// (not left to proto.Unmarshal), with the views proto.Unmarshal gives.
func TestDecodeViewReadsEnvoysRequests(t *testing.T) {
	if wireSchemaErr != nil {
		t.Fatalf("the CheckRequest schema is not readable: %v", wireSchemaErr)
	}
	withMetadata := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": "kg_x"}, map[string]string{"module": "projects", "other": "x"})
	s, err := structpb.NewStruct(map[string]any{"a": []any{"b", 1.5, true, map[string]any{"c": nil}}})
	if err != nil {
		t.Fatal(err)
	}
	withMetadata.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": s}}
	withMetadata.Attributes.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "api.example.com"}
	for name, req := range map[string]*authv3.CheckRequest{
		"headers map":   envoyRequest("GET", "/api/v1/projects/42/builds?page=2", map[string]string{"x-api-key": "kg_x"}, nil),
		"header_map":    rawRequest("POST", "/api/v1/users", [][2]string{{"x-api-key", "kg_x"}, {"x-api-key", "kg_y"}, {"accept", "*/*"}}),
		"metadata, TLS": withMetadata,
		"empty":         {},
	} {
		t.Run(name, func(t *testing.T) {
			if !checkDecode(t, marshal(t, req)) {
				t.Fatal("decodeView left an Envoy request to proto.Unmarshal")
			}
		})
	}
}

// Readings proto.Unmarshal gives that a decoder of its own could get
// wrong: a repeated message merges, a map keeps a name's last entry, a
// oneof member replaces another, a string is checked wherever it is.
func TestDecodeViewAgreesWithProto(t *testing.T) {
	socket := func(addr string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: addr}}}}}}
	}
	pipe := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{
		Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/x"}}}}}}
	port := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{
		Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9}}}}}}}
	get := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": "kg_a", "x-request-id": "1"}, map[string]string{"module": "projects"})
	post := envoyRequest("", "", map[string]string{"x-api-key": "kg_b", ":path": "/api/v1/users"}, map[string]string{"other": "y"})
	raw := rawRequest("GET", "/api/v1/projects", [][2]string{{"x-api-key", "kg_a"}})
	badDestination := envoyRequest("GET", "/", nil, nil)
	badDestination.Attributes.Destination.Address.GetSocketAddress().Address = "10.0.0.1"
	cat := func(ms ...proto.Message) []byte {
		var b []byte
		for _, m := range ms {
			b = append(b, marshal(t, m)...)
		}
		return b
	}
	// fast: decodeView reads it itself (the merge rules are its own, not
	// left to proto.Unmarshal).
	for name, c := range map[string]struct {
		b    []byte
		fast bool
	}{
		"two requests merge":                 {cat(get, post), true},
		"merge, other order":                 {cat(post, get), true},
		"header_map after headers":           {cat(get, raw), true},
		"header_map appends":                 {cat(raw, raw), true},
		"a pipe clears the socket address":   {cat(socket("10.0.0.1"), pipe), true},
		"a socket after a pipe":              {cat(pipe, socket("10.0.0.2")), true},
		"a socket merges with a socket":      {cat(socket("10.0.0.1"), port), true},
		"invalid UTF-8 in raw_value (bytes)": {bytes.Replace(marshal(t, raw), []byte("kg_a"), []byte("kg\xff\xfe"), 1), true},
		"invalid UTF-8 in the destination":   {bytes.Replace(marshal(t, badDestination), []byte("10.0.0.1"), []byte("10.0.\xff.1"), 1), false},
		"invalid UTF-8 in a header name":     {bytes.Replace(marshal(t, get), []byte("x-request-id"), []byte("x-request-\xc0d"), 1), false},
		"invalid UTF-8 in a context key":     {bytes.Replace(marshal(t, get), []byte("module"), []byte("modul\xff"), 1), false},
		"field number above the maximum":     {append(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType), 1), false},
		"a group":                            {protowire.AppendTag(protowire.AppendTag(nil, 7, protowire.StartGroupType), 7, protowire.EndGroupType), false},
		"attributes as a varint":             {append(protowire.AppendTag(nil, 1, protowire.VarintType), 1), false},
		"truncated":                          {marshal(t, get)[:40], false},
	} {
		t.Run(name, func(t *testing.T) {
			if fast := checkDecode(t, c.b); fast != c.fast {
				t.Fatalf("decodeView read it: %v, want %v", fast, c.fast)
			}
		})
	}
}

// FuzzDecodeView checks decodeView against proto.Unmarshal on any bytes:
// whatever it reads, proto.Unmarshal reads the same way.
func FuzzDecodeView(f *testing.F) {
	get := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": "kg_a"}, map[string]string{"module": "projects"})
	f.Add(marshal(f, get))
	f.Add(marshal(f, rawRequest("GET", "/x", [][2]string{{"a", "b"}, {"a", "c"}})))
	f.Add(append(marshal(f, get), marshal(f, get)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

// BenchmarkDecode compares reading an Envoy request with decodeView and
// with proto.Unmarshal (what the gRPC codec does by default).
//
//	go test ./authz/extauthz -run '^$' -bench BenchmarkDecode -benchmem
func BenchmarkDecode(b *testing.B) {
	wire := marshal(b, envoyRequest("GET", "/api/v1/projects/42/builds?page=2", map[string]string{"x-api-key": "kg_x"}, nil))
	b.Run("decodeView", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in checkInput
			in.view.headers = in.headers[:0]
			if !decodeView(bytes.Clone(wire), &in.view) {
				b.Fatal("declined")
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in checkInput
			if err := proto.Unmarshal(bytes.Clone(wire), &in.req); err != nil {
				b.Fatal(err)
			}
			viewOf(&in.req, &in.view)
		}
	})
}
