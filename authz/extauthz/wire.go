package extauthz

import (
	"fmt"
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// requestView is what a decision reads of a CheckRequest, and all of it:
// attributes.request.http's method, path, headers map and header_map,
// context_extensions["module"] and source.address.socket_address.address.
// read translates it into an authz.Request.
type requestView struct {
	method, path, module, source string
	headers                      []headerField // the headers map, one entry per name
	headerMap                    []headerField // header_map, in order; value is raw_value when that is set
}

type headerField struct{ name, value string }

// fields are the headers a decision reads: header_map when it has entries
// (Envoy's encode_raw_headers), else the headers map.
func (v *requestView) fields() []headerField {
	if len(v.headerMap) > 0 {
		return v.headerMap
	}
	return v.headers
}

// headerValue is a header_map entry's value: raw_value when it is set
// (Envoy's encode_raw_headers), else value.
func headerValue(value, raw string) string {
	if raw != "" {
		return raw
	}
	return value
}

// viewOf is the view of a decoded CheckRequest.
func viewOf(req *authv3.CheckRequest, v *requestView) {
	attrs := req.GetAttributes()
	http := attrs.GetRequest().GetHttp()
	v.method, v.path = http.GetMethod(), http.GetPath()
	for name, value := range http.GetHeaders() {
		v.headers = append(v.headers, headerField{name, value})
	}
	for _, h := range http.GetHeaderMap().GetHeaders() {
		v.headerMap = append(v.headerMap, headerField{h.GetKey(), headerValue(h.GetValue(), string(h.GetRawValue()))})
	}
	v.module = attrs.GetContextExtensions()["module"]
	v.source = attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()
}

// decodeView fills v from the encoded CheckRequest b and reports whether
// it did: false means "decode b with proto.Unmarshal instead", never
// "b is invalid". It does what proto.Unmarshal would do and no more, for
// the encodings it accepts: every field's wire format is checked, every
// string field of the whole request (metadata, peers and TLS included) is
// checked for valid UTF-8 as proto.Unmarshal checks it, a repeated
// message field merges (the last of a string wins), a map keeps the last
// entry of a key, and a oneof member other than socket_address clears the
// source address. Anything it does not mirror exactly (groups, a known
// field in an unexpected wire type, packed numbers, deep nesting, many
// headers, a schema it could not read) is left to proto.Unmarshal.
//
// Strings in v point into b, which must stay unmodified while v is used.
// What it does not allocate is the point: no message tree, no map, no
// string per header.
func decodeView(b []byte, v *requestView) bool {
	if checkRequestWire == nil {
		return false
	}
	d := wireDecoder{view: v}
	if !d.message(b, checkRequestWire, 0) {
		return false
	}
	return dedupeHeaders(v)
}

// maxWireDepth bounds the nesting decodeView follows (proto.Unmarshal's
// limit is 10,000; Envoy's requests nest 6 deep, metadata a little more).
const maxWireDepth = 64

// maxWireHeaders bounds the headers map decodeView deduplicates (in
// quadratic time); a request with more is decoded by proto.Unmarshal.
const maxWireHeaders = 64

// dedupeHeaders keeps the last entry of each name in v.headers, as a map
// does, and reports false when there are too many to compare.
func dedupeHeaders(v *requestView) bool {
	h := v.headers
	if len(h) > maxWireHeaders {
		return false
	}
	kept := h[:0]
	for i := range h {
		later := false
		for j := i + 1; j < len(h); j++ {
			if h[j].name == h[i].name {
				later = true
				break
			}
		}
		if !later {
			kept = append(kept, h[i])
		}
	}
	v.headers = kept
	return true
}

// wireRole is what a field is to the decision.
type wireRole uint8

const (
	roleNone        wireRole = iota
	roleMethod               // HttpRequest.method
	rolePath                 // HttpRequest.path
	roleSource               // the source's SocketAddress.address
	roleClearSource          // another member of the source Address's oneof
	roleKey                  // a map entry's or HeaderValue's key
	roleValue                // a map entry's or HeaderValue's value
	roleRawValue             // HeaderValue.raw_value
	roleHeader               // an entry of HttpRequest.headers
	roleHeaderMap            // an entry of HeaderMap.headers
	roleExtension            // an entry of AttributeContext.context_extensions
)

// wireKind is how a field is read.
type wireKind uint8

const (
	kindUnknown wireKind = iota // not in the schema: skipped
	kindVarint
	kindFixed32
	kindFixed64
	kindBytes
	kindString // checked for UTF-8
	kindMessage
)

type wireField struct {
	kind  wireKind
	wire  protowire.Type
	role  wireRole
	child *wireMessage
}

type wireMessage struct {
	fields []wireField // by field number
}

func (m *wireMessage) field(num protowire.Number) *wireField {
	if int(num) < len(m.fields) {
		return &m.fields[num]
	}
	return nil
}

type wireDecoder struct {
	view       *requestView
	key, value string // the entry being read
	raw        string
}

func (d *wireDecoder) message(b []byte, m *wireMessage, depth int) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return false
		}
		b = b[n:]
		f := m.field(num)
		if f == nil || f.kind == kindUnknown {
			if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
				return false
			}
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		if typ != f.wire {
			return false // proto.Unmarshal keeps it as an unknown field
		}
		switch f.kind {
		case kindVarint:
			_, n = protowire.ConsumeVarint(b)
		case kindFixed32:
			_, n = protowire.ConsumeFixed32(b)
		case kindFixed64:
			_, n = protowire.ConsumeFixed64(b)
		default:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n < 0 {
				return false
			}
			switch f.kind {
			case kindString:
				if !utf8.Valid(v) {
					return false
				}
				d.set(f.role, v)
			case kindBytes:
				d.set(f.role, v)
			case kindMessage:
				if depth >= maxWireDepth {
					return false
				}
				d.begin(f.role)
				if !d.message(v, f.child, depth+1) {
					return false
				}
				d.end(f.role)
			}
		}
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// aliased is v as a string without a copy.
func aliased(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(v), len(v))
}

func (d *wireDecoder) set(role wireRole, v []byte) {
	switch role {
	case roleMethod:
		d.view.method = aliased(v)
	case rolePath:
		d.view.path = aliased(v)
	case roleSource:
		d.view.source = aliased(v)
	case roleKey:
		d.key = aliased(v)
	case roleValue:
		d.value = aliased(v)
	case roleRawValue:
		d.raw = aliased(v)
	}
}

func (d *wireDecoder) begin(role wireRole) {
	switch role {
	case roleClearSource:
		d.view.source = ""
	case roleHeader, roleHeaderMap, roleExtension:
		d.key, d.value, d.raw = "", "", ""
	}
}

func (d *wireDecoder) end(role wireRole) {
	switch role {
	case roleHeader:
		d.view.headers = append(d.view.headers, headerField{d.key, d.value})
	case roleHeaderMap:
		d.view.headerMap = append(d.view.headerMap, headerField{d.key, headerValue(d.value, d.raw)})
	case roleExtension:
		if d.key == "module" {
			d.view.module = d.value
		}
	}
}

// checkRequestWire is the CheckRequest schema as decodeView reads it, or
// nil (and wireSchemaErr says why) when the schema is not one it can read
// exactly: then every request goes to proto.Unmarshal.
var checkRequestWire, wireSchemaErr = buildWireSchema()

// wirePath is where a message sits on the way to what a decision reads:
// the same message type (Peer, Address) plays a role on one path and none
// on another.
type wirePath uint8

const (
	pathOther wirePath = iota
	pathRoot
	pathAttributes
	pathSourcePeer
	pathSourceAddress
	pathSourceSocket
	pathRequest
	pathHTTP
	pathHeaderMap
	pathEntry // a map entry or HeaderValue read as key and value
)

// wireStep is a field on a path: the path of its message (for message
// fields) and its role.
type wireStep struct {
	path wirePath
	role wireRole
}

// wireSteps names, for each path and field, where the field leads. The
// fields are found by name in the generated descriptors, so a renamed or
// retyped field fails buildWireSchema instead of being misread.
var wireSteps = map[wirePath]map[protoreflect.Name]wireStep{
	pathRoot:          {"attributes": {pathAttributes, roleNone}},
	pathAttributes:    {"source": {pathSourcePeer, roleNone}, "request": {pathRequest, roleNone}, "context_extensions": {pathEntry, roleExtension}},
	pathSourcePeer:    {"address": {pathSourceAddress, roleNone}},
	pathSourceAddress: {"socket_address": {pathSourceSocket, roleNone}},
	pathSourceSocket:  {"address": {pathOther, roleSource}},
	pathRequest:       {"http": {pathHTTP, roleNone}},
	pathHTTP: {"method": {pathOther, roleMethod}, "path": {pathOther, rolePath},
		"headers": {pathEntry, roleHeader}, "header_map": {pathHeaderMap, roleNone}},
	pathHeaderMap: {"headers": {pathEntry, roleHeaderMap}},
	pathEntry:     {"key": {pathOther, roleKey}, "value": {pathOther, roleValue}, "raw_value": {pathOther, roleRawValue}},
}

// wireMessageNames are the message types each path must be.
var wireMessageNames = map[wirePath]protoreflect.FullName{
	pathRoot:          (*authv3.CheckRequest)(nil).ProtoReflect().Descriptor().FullName(),
	pathAttributes:    (*authv3.AttributeContext)(nil).ProtoReflect().Descriptor().FullName(),
	pathSourcePeer:    (*authv3.AttributeContext_Peer)(nil).ProtoReflect().Descriptor().FullName(),
	pathSourceAddress: (*corev3.Address)(nil).ProtoReflect().Descriptor().FullName(),
	pathSourceSocket:  (*corev3.SocketAddress)(nil).ProtoReflect().Descriptor().FullName(),
	pathRequest:       (*authv3.AttributeContext_Request)(nil).ProtoReflect().Descriptor().FullName(),
	pathHTTP:          (*authv3.AttributeContext_HttpRequest)(nil).ProtoReflect().Descriptor().FullName(),
	pathHeaderMap:     (*corev3.HeaderMap)(nil).ProtoReflect().Descriptor().FullName(),
}

// wireRoleKinds are the kinds a role's field must have.
var wireRoleKinds = map[wireRole]protoreflect.Kind{
	roleMethod: protoreflect.StringKind, rolePath: protoreflect.StringKind, roleSource: protoreflect.StringKind,
	roleKey: protoreflect.StringKind, roleValue: protoreflect.StringKind, roleRawValue: protoreflect.BytesKind,
}

// maxWireFieldNumber bounds the field numbers of a message decodeView
// reads (tables are indexed by number); a message with larger ones makes
// the schema unreadable.
const maxWireFieldNumber = 1024

type wireBuilder struct {
	other map[protoreflect.FullName]*wireMessage // messages on no path, shared
	used  map[wirePath]map[protoreflect.Name]bool
}

func buildWireSchema() (root *wireMessage, err error) {
	defer func() {
		// A schema this code cannot read must not stop keygate: every
		// request then goes to proto.Unmarshal.
		if p := recover(); p != nil {
			root, err = nil, fmt.Errorf("reading the CheckRequest schema: %v", p)
		}
	}()
	b := &wireBuilder{other: map[protoreflect.FullName]*wireMessage{}, used: map[wirePath]map[protoreflect.Name]bool{}}
	root, err = b.message((*authv3.CheckRequest)(nil).ProtoReflect().Descriptor(), pathRoot)
	if err != nil {
		return nil, err
	}
	for path, steps := range wireSteps {
		for name := range steps {
			if !b.used[path][name] {
				return nil, fmt.Errorf("no field %s in %s", name, wireMessageNames[path])
			}
		}
	}
	return root, nil
}

func (b *wireBuilder) message(md protoreflect.MessageDescriptor, path wirePath) (*wireMessage, error) {
	if path == pathOther {
		if m, ok := b.other[md.FullName()]; ok {
			return m, nil // built, or being built (a recursive type such as Struct)
		}
	} else if want, ok := wireMessageNames[path]; ok && md.FullName() != want {
		return nil, fmt.Errorf("%s is %s, not %s", md.FullName(), md.FullName(), want)
	}
	if md.ParentFile().Syntax() != protoreflect.Proto3 {
		// proto2 and editions check UTF-8 and presence by rules of their
		// own; every message of a CheckRequest is proto3 today.
		return nil, fmt.Errorf("%s is not proto3", md.FullName())
	}
	m := &wireMessage{}
	if path == pathOther {
		b.other[md.FullName()] = m
	}
	fields := md.Fields()
	for i := range fields.Len() {
		if n := fields.Get(i).Number(); n > maxWireFieldNumber {
			return nil, fmt.Errorf("%s has field number %d", md.FullName(), n)
		} else if int(n) >= len(m.fields) {
			m.fields = append(m.fields, make([]wireField, int(n)+1-len(m.fields))...)
		}
	}
	var sourceOneof protoreflect.OneofDescriptor
	if path == pathSourceAddress {
		if sock := fields.ByName("socket_address"); sock != nil {
			sourceOneof = sock.ContainingOneof()
		}
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		step, onPath := wireSteps[path][fd.Name()]
		if onPath {
			if b.used[path] == nil {
				b.used[path] = map[protoreflect.Name]bool{}
			}
			b.used[path][fd.Name()] = true
		}
		if want, ok := wireRoleKinds[step.role]; ok && (fd.Kind() != want || fd.IsList() || fd.IsMap()) {
			return nil, fmt.Errorf("%s is %v, not a singular %v", fd.FullName(), fd.Kind(), want)
		}
		if sourceOneof != nil && fd.ContainingOneof() == sourceOneof && fd.Name() != "socket_address" {
			step.role = roleClearSource
		}
		f, err := b.field(fd, step)
		if err != nil {
			return nil, err
		}
		m.fields[fd.Number()] = f
	}
	return m, nil
}

func (b *wireBuilder) field(fd protoreflect.FieldDescriptor, step wireStep) (wireField, error) {
	f := wireField{role: step.role}
	if step.path != pathOther && fd.Kind() != protoreflect.MessageKind {
		return f, fmt.Errorf("%s is %v, not a message", fd.FullName(), fd.Kind())
	}
	switch fd.Kind() {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind,
		protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		f.kind, f.wire = kindVarint, protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		f.kind, f.wire = kindFixed32, protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		f.kind, f.wire = kindFixed64, protowire.Fixed64Type
	case protoreflect.StringKind:
		f.kind, f.wire = kindString, protowire.BytesType
	case protoreflect.BytesKind:
		f.kind, f.wire = kindBytes, protowire.BytesType
	case protoreflect.MessageKind:
		child, err := b.message(fd.Message(), step.path)
		if err != nil {
			return f, err
		}
		f.kind, f.wire, f.child = kindMessage, protowire.BytesType, child
	default: // groups
		return f, fmt.Errorf("%s is a %v", fd.FullName(), fd.Kind())
	}
	if fd.IsMap() {
		// A map's entries are messages with key and value; only the
		// string maps on a path are read, and an entry is checked like
		// any message.
		if step.path == pathEntry && (fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind) {
			return f, fmt.Errorf("%s is not a map of strings", fd.FullName())
		}
	} else if step.path == pathEntry && fd.Message().FullName() != (*corev3.HeaderValue)(nil).ProtoReflect().Descriptor().FullName() {
		return f, fmt.Errorf("%s holds %s, not HeaderValue", fd.FullName(), fd.Message().FullName())
	}
	return f, nil
}
