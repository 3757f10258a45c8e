package msghubemu

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Metadata keys of the node id (docs: shared/MSGHUB.md).
const (
	// MetadataNodeID carries the node id as UUID text.
	MetadataNodeID = "node-id"
	// MetadataNodeIDBin carries the node id as 16 raw bytes; the hub reads
	// it first.
	MetadataNodeIDBin = "node-id-bin"
)

type nodeIDKey struct{}

// nodeID reads the node id from the metadata as the hub does: node-id-bin
// first, then node-id.
func nodeID(ctx context.Context) (uuid.UUID, string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(MetadataNodeIDBin); len(v) > 0 {
		id, err := uuid.FromBytes([]byte(v[0]))
		if err != nil {
			return uuid.Nil, MetadataNodeIDBin, status.Errorf(codes.InvalidArgument, "invalid node id: %v", err)
		}
		return id, MetadataNodeIDBin, nil
	}
	if v := md.Get(MetadataNodeID); len(v) > 0 {
		id, err := uuid.Parse(v[0])
		if err != nil {
			return uuid.Nil, MetadataNodeID, status.Errorf(codes.InvalidArgument, "invalid node id %q: %v", v[0], err)
		}
		return id, MetadataNodeID, nil
	}
	return uuid.Nil, "", status.Error(codes.Unauthenticated, "node not authenticated")
}

func methodName(full string) string { return full[strings.LastIndex(full, "/")+1:] }

// begin checks the metadata and the injected failures of a call; the
// returned func records the call with its outcome.
func (h *Hub) begin(ctx context.Context, fullMethod string) (context.Context, func(error), error) {
	method := methodName(fullMethod)
	id, key, err := nodeID(ctx)
	call := Call{Method: method, MetadataKey: key}
	if err == nil {
		call.NodeID = id.String()
		h.mu.Lock()
		if q := h.failures[method]; len(q) > 0 {
			err, h.failures[method] = q[0], q[1:]
		}
		if err == nil {
			err = h.countStopLocked(method)
		}
		h.mu.Unlock()
	}
	var once sync.Once
	record := func(err error) {
		once.Do(func() {
			call.Code = status.Code(err)
			h.mu.Lock()
			h.calls = append(h.calls, call)
			h.mu.Unlock()
			h.notify()
		})
	}
	if err != nil {
		record(err)
		return ctx, nil, err
	}
	ctx = context.WithValue(ctx, nodeIDKey{}, id)
	return context.WithValue(ctx, recordKey{}, record), record, nil
}

type recordKey struct{}

// recordCall records the call of ctx now (an Attach is recorded when
// accepted or refused, not when its stream ends).
func recordCall(ctx context.Context, err error) {
	if record, ok := ctx.Value(recordKey{}).(func(error)); ok {
		record(err)
	}
}

func (h *Hub) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, record, err := h.begin(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	resp, err := handler(ctx, req)
	record(err)
	return resp, err
}

type idStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s idStream) Context() context.Context { return s.ctx }

func (h *Hub) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, record, err := h.begin(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	err = handler(srv, idStream{ServerStream: ss, ctx: ctx})
	record(err)
	return err
}

// serviceDesc builds the MessageHub service of the hub's protocol version
// from its descriptor, so one implementation serves both versions.
func (h *Hub) serviceDesc() *grpc.ServiceDesc {
	sd := h.w.file.Services().ByName("MessageHub")
	desc := &grpc.ServiceDesc{ServiceName: string(sd.FullName()), HandlerType: (*any)(nil), Metadata: h.w.file.Path()}
	methods := sd.Methods()
	for k := 0; k < methods.Len(); k++ {
		md := methods.Get(k)
		name, input := string(md.Name()), md.Input()
		newInput := func() proto.Message {
			if input.FullName() == "google.protobuf.Empty" {
				return &emptypb.Empty{}
			}
			return h.w.new(input.Name()).Interface()
		}
		if md.IsStreamingServer() {
			desc.Streams = append(desc.Streams, grpc.StreamDesc{StreamName: name, ServerStreams: true,
				Handler: func(_ any, stream grpc.ServerStream) error {
					in := newInput()
					if err := stream.RecvMsg(in); err != nil {
						return err
					}
					return h.attach(stream, in.ProtoReflect())
				}})
			continue
		}
		full := "/" + desc.ServiceName + "/" + name
		desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: name,
			Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				in := newInput()
				if err := dec(in); err != nil {
					return nil, err
				}
				handler := func(ctx context.Context, req any) (any, error) {
					return h.unary(ctx, name, req.(proto.Message).ProtoReflect())
				}
				if interceptor == nil {
					return handler(ctx, in)
				}
				return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, handler)
			}})
	}
	return desc
}

func strings2(l protoreflect.List) []string {
	out := make([]string, l.Len())
	for k := range out {
		out[k] = l.Get(k).String()
	}
	return out
}

// attach serves Attach: parse the interfaces (INVALID_ARGUMENT), merge them
// (INTERNAL on a conflict), replace an earlier attachment of the node,
// queue the stored server properties of its interfaces, then stream.
func (h *Hub) attach(stream grpc.ServerStream, in protoreflect.Message) error {
	ctx := stream.Context()
	id := ctx.Value(nodeIDKey{}).(uuid.UUID)
	docs := strings2(in.Get(field(in, "interfaces_json")).List())
	rec := &Attach{NodeID: id.String(), Interfaces: docs}
	fail := func(err error) error {
		rec.Code = status.Code(err)
		h.mu.Lock()
		h.attaches = append(h.attaches, rec)
		h.mu.Unlock()
		recordCall(ctx, err)
		return err
	}
	ifaces := map[string]*iface{}
	for _, doc := range docs {
		i, err := parseInterface(doc)
		if err != nil {
			return fail(status.Error(codes.InvalidArgument, err.Error()))
		}
		ifaces[i.Name] = i
	}
	n := &node{id: id, ifaces: ifaces, events: make(chan proto.Message, h.opts.EventBuffer), done: make(chan struct{}), attach: rec}
	h.mu.Lock()
	for _, i := range ifaces {
		if err := h.conflictLocked(id, i); err != nil {
			h.mu.Unlock()
			return fail(status.Error(codes.Internal, err.Error()))
		}
	}
	if old := h.nodes[id]; old != nil {
		old.end("reattach", nil)
	}
	h.nodes[id] = n
	h.mergeLocked()
	var replay []proto.Message
	for k, d := range h.serverProps {
		if _, ok := ifaces[k.iface]; ok {
			m, err := h.w.encode(d)
			if err == nil {
				replay = append(replay, h.w.messageEvent(m))
			}
		}
	}
	for _, ev := range replay {
		select {
		case n.events <- ev:
		default:
		}
	}
	rec.Code = codes.OK
	h.attaches = append(h.attaches, rec)
	h.mu.Unlock()
	recordCall(ctx, nil)
	// Accepted: the headers tell the node so before any event.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		h.dropNode(n, "client gone")
		return err
	}
	for {
		select {
		case <-n.done:
			return n.endErr
		case <-ctx.Done():
			h.dropNode(n, "client gone")
			return ctx.Err()
		case ev := <-n.events:
			if err := stream.SendMsg(ev); err != nil {
				h.dropNode(n, "client gone")
				return err
			}
		}
	}
}

// dropNode unregisters n (if still the node's attachment) and ends it.
func (h *Hub) dropNode(n *node, reason string) {
	h.mu.Lock()
	if h.nodes[n.id] == n {
		delete(h.nodes, n.id)
		h.mergeLocked()
	}
	n.end(reason, nil)
	h.mu.Unlock()
	h.notify()
}

// conflictLocked reports an interface that clashes with another node's
// (same name, another major version).
func (h *Hub) conflictLocked(self uuid.UUID, i *iface) error {
	for id, n := range h.nodes {
		if id == self {
			continue
		}
		if o, ok := n.ifaces[i.Name]; ok && o.Major != i.Major {
			return fmt.Errorf("interface %s version %d.%d conflicts with version %d.%d of node %s", i.Name, i.Major, i.Minor, o.Major, o.Minor, id)
		}
	}
	return nil
}

// mergeLocked rebuilds the device introspection from the attached nodes
// (the newest minor of each interface).
func (h *Hub) mergeLocked() {
	merged := map[string]*iface{}
	for _, n := range h.nodes {
		for name, i := range n.ifaces {
			if o, ok := merged[name]; !ok || i.Minor > o.Minor {
				merged[name] = i
			}
		}
	}
	h.introspect = merged
}

func (h *Hub) attachedNode(ctx context.Context) (*node, error) {
	id := ctx.Value(nodeIDKey{}).(uuid.UUID)
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[id]
	if !ok {
		return nil, status.Errorf(codes.Unauthenticated, "node %s is not attached", id)
	}
	return n, nil
}

// unary serves the unary RPCs.
func (h *Hub) unary(ctx context.Context, method string, in protoreflect.Message) (proto.Message, error) {
	n, err := h.attachedNode(ctx)
	if err != nil {
		if method == "Send" {
			h.recordSend(Send{NodeID: ctx.Value(nodeIDKey{}).(uuid.UUID).String(), Message: proto.Clone(in.Interface()), Code: status.Code(err), Error: err.Error()})
		}
		return nil, err
	}
	switch method {
	case "Send":
		return h.send(n, in)
	case "Detach":
		h.mu.Lock()
		if h.nodes[n.id] == n {
			delete(h.nodes, n.id)
			h.mergeLocked()
		}
		n.end("detach", nil)
		h.mu.Unlock()
		h.notify()
		return &emptypb.Empty{}, nil
	case "AddInterfaces":
		return h.addInterfaces(n, strings2(in.Get(field(in, "interfaces_json")).List()))
	case "RemoveInterfaces":
		h.removeInterfaces(n, strings2(in.Get(field(in, "names")).List()))
		return &emptypb.Empty{}, nil
	case "GetProperties":
		name := in.Get(field(in, "name")).String()
		return h.storedProperties(func(k propKey, _ bool) bool { return k.iface == name }), nil
	case "GetAllProperties":
		fd := field(in, "ownership")
		all, server := !in.Has(fd), in.Get(fd).Enum() == 1
		return h.storedProperties(func(_ propKey, srv bool) bool { return all || srv == server }), nil
	case "GetProperty":
		k := propKey{in.Get(field(in, "interface_name")).String(), in.Get(field(in, "path")).String()}
		out := h.w.new("AstartePropertyIndividual")
		h.mu.Lock()
		d, ok := h.serverProps[k]
		if !ok {
			d, ok = h.deviceProps[k]
		}
		h.mu.Unlock()
		if ok {
			if err := putValue(out.Mutable(field(out, "data")).Message(), d.Value); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
		}
		return out.Interface(), nil
	}
	return nil, status.Errorf(codes.Unimplemented, "method %s not implemented", method)
}

func (h *Hub) recordSend(s Send) {
	h.mu.Lock()
	h.sends = append(h.sends, s)
	h.mu.Unlock()
	h.notify()
}

// send serves Send: decode, check as the hub's SDK would, record, store a
// device property.
func (h *Hub) send(n *node, in protoreflect.Message) (proto.Message, error) {
	d, err := h.w.decode(in)
	rec := Send{NodeID: n.id.String(), Data: d, Message: proto.Clone(in.Interface())}
	h.mu.Lock()
	if err == nil {
		err = h.checkSendLocked(d)
	}
	if err != nil {
		rec.Code, rec.Error = codes.Internal, "Unable to publish astarte message, err: "+err.Error()
		h.sends = append(h.sends, rec)
		h.mu.Unlock()
		h.notify()
		return nil, status.Error(codes.Internal, rec.Error)
	}
	if i := h.introspect[d.Interface]; i.properties() {
		k := propKey{d.Interface, d.Path}
		if d.Kind == KindUnset {
			delete(h.deviceProps, k)
		} else {
			h.deviceProps[k] = d
		}
	}
	h.sends = append(h.sends, rec)
	h.mu.Unlock()
	h.notify()
	return &emptypb.Empty{}, nil
}

// checkSendLocked refuses what the hub's SDK refuses.
func (h *Hub) checkSendLocked(d Data) error {
	i := h.introspect[d.Interface]
	if i == nil {
		return fmt.Errorf("interface %s not found in the introspection", d.Interface)
	}
	if i.Ownership != "device" {
		return fmt.Errorf("interface %s is server-owned: the device cannot publish on it", d.Interface)
	}
	checkValue := func(path, typ string) error {
		m, err := i.lookup(path)
		if err != nil {
			return err
		}
		if m.Type != typ {
			return fmt.Errorf("interface %s path %s: type mismatch: got %s, the mapping is %s", i.Name, path, typ, m.Type)
		}
		return nil
	}
	switch d.Kind {
	case KindUnset:
		if !i.properties() {
			return fmt.Errorf("interface %s: unset on a datastream", i.Name)
		}
		m, err := i.lookup(d.Path)
		if err != nil {
			return err
		}
		if !m.AllowUnset {
			return fmt.Errorf("interface %s path %s: unset not allowed", i.Name, d.Path)
		}
		return nil
	case KindProperty:
		if !i.properties() {
			return fmt.Errorf("interface %s: a property value on a datastream", i.Name)
		}
		return checkValue(d.Path, d.Type)
	case KindIndividual:
		if h.w.protocol == Protocol08 && i.properties() {
			return fmt.Errorf("interface %s: a datastream value on a properties interface", i.Name)
		}
		if i.object() {
			return fmt.Errorf("interface %s: an individual value on an object-aggregated interface", i.Name)
		}
		return checkValue(d.Path, d.Type)
	case KindObject:
		if i.properties() || !i.object() {
			return fmt.Errorf("interface %s: an object on an individual interface", i.Name)
		}
		if len(d.Object) == 0 {
			return fmt.Errorf("interface %s path %s: empty object", i.Name, d.Path)
		}
		for k, t := range d.ObjectTypes {
			if err := checkValue(d.Path+"/"+k, t); err != nil {
				return err
			}
		}
		return nil
	}
	return errors.New("no payload")
}

func (h *Hub) addInterfaces(n *node, docs []string) (proto.Message, error) {
	parsed := make([]*iface, 0, len(docs))
	for _, doc := range docs {
		i, err := parseInterface(doc)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		parsed = append(parsed, i)
	}
	h.mu.Lock()
	defer h.notify()
	defer h.mu.Unlock()
	for _, i := range parsed {
		if err := h.conflictLocked(n.id, i); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if o, ok := n.ifaces[i.Name]; ok && (o.Major != i.Major || i.Minor < o.Minor) {
			return nil, status.Errorf(codes.Internal, "interface %s version %d.%d cannot replace version %d.%d", i.Name, i.Major, i.Minor, o.Major, o.Minor)
		}
	}
	for _, i := range parsed {
		n.ifaces[i.Name] = i
	}
	h.mergeLocked()
	return &emptypb.Empty{}, nil
}

func (h *Hub) removeInterfaces(n *node, names []string) {
	h.mu.Lock()
	defer h.notify()
	defer h.mu.Unlock()
	for _, name := range names {
		delete(n.ifaces, name)
	}
	h.mergeLocked()
	for _, name := range names {
		if _, used := h.introspect[name]; used {
			continue
		}
		for k := range h.serverProps {
			if k.iface == name {
				delete(h.serverProps, k)
			}
		}
		for k := range h.deviceProps {
			if k.iface == name {
				delete(h.deviceProps, k)
			}
		}
	}
}

// storedProperties is a StoredProperties (0.8) of the selected properties.
func (h *Hub) storedProperties(keep func(k propKey, server bool) bool) proto.Message {
	type entry struct {
		k      propKey
		d      Data
		server bool
	}
	h.mu.Lock()
	var all []entry
	for k, d := range h.serverProps {
		if keep(k, true) {
			all = append(all, entry{k, d, true})
		}
	}
	for k, d := range h.deviceProps {
		if keep(k, false) {
			all = append(all, entry{k, d, false})
		}
	}
	majors := map[string]int{}
	for name, i := range h.introspect {
		majors[name] = i.Major
	}
	h.mu.Unlock()
	sort.Slice(all, func(a, b int) bool {
		if all[a].k.iface != all[b].k.iface {
			return all[a].k.iface < all[b].k.iface
		}
		return all[a].k.path < all[b].k.path
	})
	out := h.w.new("StoredProperties")
	list := out.Mutable(field(out, "properties")).List()
	for _, e := range all {
		p := list.NewElement()
		pm := p.Message()
		pm.Set(field(pm, "interface_name"), protoreflect.ValueOfString(e.k.iface))
		pm.Set(field(pm, "path"), protoreflect.ValueOfString(e.k.path))
		pm.Set(field(pm, "version_major"), protoreflect.ValueOfInt32(int32(majors[e.k.iface]))) //nolint:gosec // a small version number
		own := protoreflect.EnumNumber(0)
		if e.server {
			own = 1
		}
		pm.Set(field(pm, "ownership"), protoreflect.ValueOfEnum(own))
		if err := putValue(pm.Mutable(field(pm, "data")).Message(), e.d.Value); err == nil {
			list.Append(p)
		}
	}
	return out.Interface()
}
