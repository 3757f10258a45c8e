package msghub

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
	msghubv07 "github.com/connector-host/connector-host/proto/gen/astarteplatform/msghub"
	msghubv08 "github.com/connector-host/connector-host/proto/gen/astarteplatform/msghub/v08"
)

// Protocol is a wire version of the Message Hub protocol (docs:
// shared/MSGHUB.md).
type Protocol string

// Protocol versions.
const (
	// Protocol07 is astarte-message-hub-proto 0.7 (hubs 0.7.x, the Python
	// SDK 0.14's pin): AstarteMessage carries astarte_data (individual or
	// object) or astarte_unset, and the timestamp at the top level
	// (field 5).
	Protocol07 Protocol = "0.7"
	// Protocol08 is 0.8 (hubs >= 0.8): AstarteMessage carries
	// datastream_individual, datastream_object or property_individual
	// (no data: unset), each datastream with its own timestamp.
	Protocol08 Protocol = "0.8"
)

// DefaultProtocol is the protocol when none is set.
const DefaultProtocol = Protocol07

// ParseProtocol checks a protocol setting ("" is the default).
func ParseProtocol(s string) (Protocol, error) {
	switch Protocol(s) {
	case "":
		return DefaultProtocol, nil
	case Protocol07, Protocol08:
		return Protocol(s), nil
	}
	return "", fmt.Errorf("protocol %q is not supported (0.7 or 0.8)", s)
}

// Method paths of the MessageHub service (the same in both versions).
const (
	methodAttach           = "/astarteplatform.msghub.MessageHub/Attach"
	methodSend             = "/astarteplatform.msghub.MessageHub/Send"
	methodDetach           = "/astarteplatform.msghub.MessageHub/Detach"
	methodAddInterfaces    = "/astarteplatform.msghub.MessageHub/AddInterfaces"
	methodRemoveInterfaces = "/astarteplatform.msghub.MessageHub/RemoveInterfaces"
	methodGetAllProperties = "/astarteplatform.msghub.MessageHub/GetAllProperties"
)

// layout is one protocol version's messages: 0.7 as the generated Go types,
// 0.8 as dynamic messages of its descriptor. The value union (0.7
// AstarteDataTypeIndividual, 0.8 AstarteData) has the same field numbers in
// both, so values are written and read by number.
type layout struct {
	protocol Protocol
	message  protoreflect.MessageType // AstarteMessage
	event    protoreflect.MessageType // MessageHubEvent
	node     protoreflect.MessageType // Node
	ifJSON   protoreflect.MessageType // InterfacesJson
	ifNames  protoreflect.MessageType // InterfacesName

	// AstarteMessage fields.
	fInterface, fPath protoreflect.FieldDescriptor
	payload           protoreflect.OneofDescriptor
	// 0.7.
	fData, fUnset, fTimestamp protoreflect.FieldDescriptor
	fIndividual, fObject      protoreflect.FieldDescriptor // of AstarteDataType
	fObjectData               protoreflect.FieldDescriptor // of AstarteDataTypeObject
	// 0.8.
	fDSIndividual, fDSObject, fProperty protoreflect.FieldDescriptor
}

var layouts = map[Protocol]*layout{}

func init() {
	v07 := &layout{protocol: Protocol07,
		message: (&msghubv07.AstarteMessage{}).ProtoReflect().Type(),
		event:   (&msghubv07.MessageHubEvent{}).ProtoReflect().Type(),
		node:    (&msghubv07.Node{}).ProtoReflect().Type(),
		ifJSON:  (&msghubv07.InterfacesJson{}).ProtoReflect().Type(),
		ifNames: (&msghubv07.InterfacesName{}).ProtoReflect().Type(),
	}
	v08 := &layout{protocol: Protocol08,
		message: msghubv08.Type("AstarteMessage"),
		event:   msghubv08.Type("MessageHubEvent"),
		node:    msghubv08.Type("Node"),
		ifJSON:  msghubv08.Type("InterfacesJson"),
		ifNames: msghubv08.Type("InterfacesName"),
	}
	for _, l := range []*layout{v07, v08} {
		f := l.message.Descriptor().Fields()
		l.fInterface, l.fPath = f.ByName("interface_name"), f.ByName("path")
		l.payload = l.message.Descriptor().Oneofs().ByName("payload")
		layouts[l.protocol] = l
	}
	f := v07.message.Descriptor().Fields()
	v07.fData, v07.fUnset, v07.fTimestamp = f.ByName("astarte_data"), f.ByName("astarte_unset"), f.ByName("timestamp")
	dt := v07.fData.Message().Fields()
	v07.fIndividual, v07.fObject = dt.ByName("astarte_individual"), dt.ByName("astarte_object")
	v07.fObjectData = v07.fObject.Message().Fields().ByName("object_data")
	f = v08.message.Descriptor().Fields()
	v08.fDSIndividual, v08.fDSObject, v08.fProperty = f.ByName("datastream_individual"), f.ByName("datastream_object"), f.ByName("property_individual")
}

// unionNumber is the field number of each type in the value union.
var unionNumber = map[interfaces.MappingType]protoreflect.FieldNumber{
	interfaces.Double: 1, interfaces.Integer: 2, interfaces.Boolean: 3, interfaces.LongInteger: 4,
	interfaces.String: 5, interfaces.BinaryBlob: 6, interfaces.DateTime: 7,
	interfaces.DoubleArray: 8, interfaces.IntegerArray: 9, interfaces.BooleanArray: 10,
	interfaces.LongIntegerArray: 11, interfaces.StringArray: 12, interfaces.BinaryBlobArray: 13, interfaces.DateTimeArray: 14,
}

var unionType = func() map[protoreflect.FieldNumber]interfaces.MappingType {
	m := map[protoreflect.FieldNumber]interfaces.MappingType{}
	for t, n := range unionNumber {
		m[n] = t
	}
	return m
}()

// outgoing is a validated message in Go form.
type outgoing struct {
	iface     string
	path      string
	property  bool // a properties interface
	unset     bool
	typ       interfaces.MappingType // individual
	value     any                    // individual (canonical)
	object    map[string]any         // object values by key
	objTypes  map[string]interfaces.MappingType
	timestamp *time.Time
}

func setTimestamp(m protoreflect.Message, t time.Time) {
	if ts, ok := m.Interface().(*timestamppb.Timestamp); ok {
		ts.Seconds, ts.Nanos = t.Unix(), int32(t.Nanosecond()) //nolint:gosec // below 1e9
		return
	}
	f := m.Descriptor().Fields()
	m.Set(f.ByNumber(1), protoreflect.ValueOfInt64(t.Unix()))
	m.Set(f.ByNumber(2), protoreflect.ValueOfInt32(int32(t.Nanosecond()))) //nolint:gosec // below 1e9
}

func getTimestamp(m protoreflect.Message) (time.Time, error) {
	f := m.Descriptor().Fields()
	s, n := m.Get(f.ByNumber(1)).Int(), m.Get(f.ByNumber(2)).Int()
	if n < 0 || n >= 1e9 {
		return time.Time{}, fmt.Errorf("timestamp nanos %d out of range", n)
	}
	return time.Unix(s, n).UTC(), nil
}

// putValue writes a canonical value of type t into the union u.
func putValue(u protoreflect.Message, t interfaces.MappingType, v any) error {
	fd := u.Descriptor().Fields().ByNumber(unionNumber[t])
	if fd == nil {
		return fmt.Errorf("type %q has no protobuf field", t)
	}
	bad := func() error { return fmt.Errorf("value of Go type %T is not a %s", v, t) }
	if !t.IsArray() {
		var pv protoreflect.Value
		ok := false
		switch t {
		case interfaces.Double:
			var x float64
			if x, ok = v.(float64); ok {
				pv = protoreflect.ValueOfFloat64(x)
			}
		case interfaces.Integer:
			var x int32
			if x, ok = v.(int32); ok {
				pv = protoreflect.ValueOfInt32(x)
			}
		case interfaces.Boolean:
			var x bool
			if x, ok = v.(bool); ok {
				pv = protoreflect.ValueOfBool(x)
			}
		case interfaces.LongInteger:
			var x int64
			if x, ok = v.(int64); ok {
				pv = protoreflect.ValueOfInt64(x)
			}
		case interfaces.String:
			var x string
			if x, ok = v.(string); ok {
				pv = protoreflect.ValueOfString(x)
			}
		case interfaces.BinaryBlob:
			var x []byte
			if x, ok = v.([]byte); ok {
				pv = protoreflect.ValueOfBytes(x)
			}
		case interfaces.DateTime:
			var x time.Time
			if x, ok = v.(time.Time); ok {
				setTimestamp(u.Mutable(fd).Message(), x)
				return nil
			}
		}
		if !ok {
			return bad()
		}
		u.Set(fd, pv)
		return nil
	}
	if ok := arrayGoType[t] == reflect.TypeOf(v); !ok {
		return bad()
	}
	arr := u.Mutable(fd).Message()
	list := arr.Mutable(arr.Descriptor().Fields().ByNumber(1)).List()
	switch x := v.(type) {
	case []float64:
		for _, e := range x {
			list.Append(protoreflect.ValueOfFloat64(e))
		}
	case []int32:
		for _, e := range x {
			list.Append(protoreflect.ValueOfInt32(e))
		}
	case []bool:
		for _, e := range x {
			list.Append(protoreflect.ValueOfBool(e))
		}
	case []int64:
		for _, e := range x {
			list.Append(protoreflect.ValueOfInt64(e))
		}
	case []string:
		for _, e := range x {
			list.Append(protoreflect.ValueOfString(e))
		}
	case [][]byte:
		for _, e := range x {
			list.Append(protoreflect.ValueOfBytes(e))
		}
	case []time.Time:
		for _, e := range x {
			el := list.NewElement()
			setTimestamp(el.Message(), e)
			list.Append(el)
		}
	default:
		return bad()
	}
	return nil
}

var arrayGoType = map[interfaces.MappingType]reflect.Type{
	interfaces.DoubleArray: reflect.TypeFor[[]float64](), interfaces.IntegerArray: reflect.TypeFor[[]int32](),
	interfaces.BooleanArray: reflect.TypeFor[[]bool](), interfaces.LongIntegerArray: reflect.TypeFor[[]int64](),
	interfaces.StringArray: reflect.TypeFor[[]string](), interfaces.BinaryBlobArray: reflect.TypeFor[[][]byte](),
	interfaces.DateTimeArray: reflect.TypeFor[[]time.Time](),
}

// getValue reads the union u: its type and canonical value.
func getValue(u protoreflect.Message) (interfaces.MappingType, any, error) {
	fd := u.WhichOneof(u.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return "", nil, errors.New("the value has no data")
	}
	t, ok := unionType[fd.Number()]
	if !ok {
		return "", nil, fmt.Errorf("unknown value field %d", fd.Number())
	}
	v := u.Get(fd)
	switch t {
	case interfaces.Double:
		return t, v.Float(), nil
	case interfaces.Integer:
		return t, int32(v.Int()), nil //nolint:gosec // an int32 field
	case interfaces.Boolean:
		return t, v.Bool(), nil
	case interfaces.LongInteger:
		return t, v.Int(), nil
	case interfaces.String:
		return t, v.String(), nil
	case interfaces.BinaryBlob:
		return t, append([]byte{}, v.Bytes()...), nil
	case interfaces.DateTime:
		ts, err := getTimestamp(v.Message())
		return t, ts, err
	}
	list := v.Message().Get(v.Message().Descriptor().Fields().ByNumber(1)).List()
	n := list.Len()
	switch t {
	case interfaces.DoubleArray:
		out := make([]float64, n)
		for k := range out {
			out[k] = list.Get(k).Float()
		}
		return t, out, nil
	case interfaces.IntegerArray:
		out := make([]int32, n)
		for k := range out {
			out[k] = int32(list.Get(k).Int()) //nolint:gosec // an int32 field
		}
		return t, out, nil
	case interfaces.BooleanArray:
		out := make([]bool, n)
		for k := range out {
			out[k] = list.Get(k).Bool()
		}
		return t, out, nil
	case interfaces.LongIntegerArray:
		out := make([]int64, n)
		for k := range out {
			out[k] = list.Get(k).Int()
		}
		return t, out, nil
	case interfaces.StringArray:
		out := make([]string, n)
		for k := range out {
			out[k] = list.Get(k).String()
		}
		return t, out, nil
	case interfaces.BinaryBlobArray:
		out := make([][]byte, n)
		for k := range out {
			out[k] = append([]byte{}, list.Get(k).Bytes()...)
		}
		return t, out, nil
	default: // DateTimeArray
		out := make([]time.Time, n)
		for k := range out {
			ts, err := getTimestamp(list.Get(k).Message())
			if err != nil {
				return t, nil, fmt.Errorf("item %d: %w", k, err)
			}
			out[k] = ts
		}
		return t, out, nil
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// encode builds the AstarteMessage of o: in 0.7 a value (individual or
// object) or astarte_unset, the timestamp at the top level; in 0.8 a
// datastream individual or object with its timestamp inside, or a property
// individual (without data for an unset).
//
// 0.7 builds the generated Go types directly (encode07); 0.8, a descriptor
// set (ADR 0005), goes through protoreflect (encodeReflect), which also
// works for 0.7 and is what encode07 is tested against.
func (l *layout) encode(o *outgoing) (protoreflect.Message, error) {
	if l.protocol == Protocol07 {
		m, err := encode07(o)
		if err != nil {
			return nil, err
		}
		return m.ProtoReflect(), nil
	}
	return l.encodeReflect(o)
}

// encodeMessage is encode as the proto.Message to send.
func (l *layout) encodeMessage(o *outgoing) (proto.Message, error) {
	if l.protocol == Protocol07 {
		return encode07(o)
	}
	m, err := l.encodeReflect(o)
	if err != nil {
		return nil, err
	}
	return m.Interface(), nil
}

// encodeReflect is encode through protoreflect, for either layout.
func (l *layout) encodeReflect(o *outgoing) (protoreflect.Message, error) {
	m := l.message.New()
	m.Set(l.fInterface, protoreflect.ValueOfString(o.iface))
	m.Set(l.fPath, protoreflect.ValueOfString(o.path))
	putObject := func(mp protoreflect.Map) error {
		for _, k := range sortedKeys(o.object) {
			v := mp.NewValue()
			if err := putValue(v.Message(), o.objTypes[k], o.object[k]); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			mp.Set(protoreflect.ValueOfString(k).MapKey(), v)
		}
		return nil
	}
	if l.protocol == Protocol07 {
		switch {
		case o.unset:
			m.Mutable(l.fUnset)
		case o.object != nil:
			obj := m.Mutable(l.fData).Message().Mutable(l.fObject).Message()
			if err := putObject(obj.Mutable(l.fObjectData).Map()); err != nil {
				return nil, err
			}
		default:
			u := m.Mutable(l.fData).Message().Mutable(l.fIndividual).Message()
			if err := putValue(u, o.typ, o.value); err != nil {
				return nil, err
			}
		}
		if o.timestamp != nil {
			setTimestamp(m.Mutable(l.fTimestamp).Message(), *o.timestamp)
		}
		return m, nil
	}
	switch {
	case o.property:
		p := m.Mutable(l.fProperty).Message()
		if !o.unset {
			if err := putValue(p.Mutable(p.Descriptor().Fields().ByName("data")).Message(), o.typ, o.value); err != nil {
				return nil, err
			}
		}
	case o.unset:
		return nil, errors.New("a datastream cannot be unset")
	case o.object != nil:
		ds := m.Mutable(l.fDSObject).Message()
		f := ds.Descriptor().Fields()
		if err := putObject(ds.Mutable(f.ByName("data")).Map()); err != nil {
			return nil, err
		}
		if o.timestamp != nil {
			setTimestamp(ds.Mutable(f.ByName("timestamp")).Message(), *o.timestamp)
		}
	default:
		ds := m.Mutable(l.fDSIndividual).Message()
		f := ds.Descriptor().Fields()
		if err := putValue(ds.Mutable(f.ByName("data")).Message(), o.typ, o.value); err != nil {
			return nil, err
		}
		if o.timestamp != nil {
			setTimestamp(ds.Mutable(f.ByName("timestamp")).Message(), *o.timestamp)
		}
	}
	return m, nil
}

// incoming is an AstarteMessage from the hub in Go form.
type incoming struct {
	iface, path string
	unset       bool
	typ         interfaces.MappingType // individual
	value       any
	object      map[string]any
	objTypes    map[string]interfaces.MappingType
	timestamp   *time.Time
}

// decode reads an AstarteMessage of the layout.
func (l *layout) decode(m protoreflect.Message) (incoming, error) {
	in := incoming{iface: m.Get(l.fInterface).String(), path: m.Get(l.fPath).String()}
	which := m.WhichOneof(l.payload)
	if which == nil {
		return in, errors.New("the message has no payload")
	}
	readTS := func(owner protoreflect.Message, fd protoreflect.FieldDescriptor) error {
		if fd == nil || !owner.Has(fd) {
			return nil
		}
		ts, err := getTimestamp(owner.Get(fd).Message())
		if err != nil {
			return err
		}
		in.timestamp = &ts
		return nil
	}
	readObject := func(mp protoreflect.Map) error {
		if mp.Len() == 0 {
			return errors.New("empty object")
		}
		in.object, in.objTypes = make(map[string]any, mp.Len()), make(map[string]interfaces.MappingType, mp.Len())
		var err error
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			var t interfaces.MappingType
			var val any
			if t, val, err = getValue(v.Message()); err != nil {
				err = fmt.Errorf("object key %q: %w", k.String(), err)
				return false
			}
			in.object[k.String()], in.objTypes[k.String()] = val, t
			return true
		})
		return err
	}
	var err error
	switch which {
	case l.fData: // 0.7
		dt := m.Get(l.fData).Message()
		switch dt.WhichOneof(l.fIndividual.ContainingOneof()) {
		case l.fIndividual:
			in.typ, in.value, err = getValue(dt.Get(l.fIndividual).Message())
		case l.fObject:
			err = readObject(dt.Get(l.fObject).Message().Get(l.fObjectData).Map())
		default:
			err = errors.New("astarte_data has no data")
		}
		if err == nil {
			err = readTS(m, l.fTimestamp)
		}
	case l.fUnset: // 0.7
		in.unset = true
	case l.fDSIndividual: // 0.8
		ds := m.Get(which).Message()
		f := ds.Descriptor().Fields()
		if !ds.Has(f.ByName("data")) {
			return in, errors.New("datastream_individual has no data")
		}
		if in.typ, in.value, err = getValue(ds.Get(f.ByName("data")).Message()); err == nil {
			err = readTS(ds, f.ByName("timestamp"))
		}
	case l.fDSObject: // 0.8
		ds := m.Get(which).Message()
		f := ds.Descriptor().Fields()
		if err = readObject(ds.Get(f.ByName("data")).Map()); err == nil {
			err = readTS(ds, f.ByName("timestamp"))
		}
	case l.fProperty: // 0.8
		p := m.Get(which).Message()
		fd := p.Descriptor().Fields().ByName("data")
		if !p.Has(fd) {
			in.unset = true
			break
		}
		in.typ, in.value, err = getValue(p.Get(fd).Message())
	default:
		err = fmt.Errorf("unknown payload %s", which.Name())
	}
	return in, err
}

// outgoingOf turns a transport message into its Go form: its Value when
// the device set it (a message just validated), else its BSON payload
// decoded (a message from the durable queue, a property resynchronised).
func outgoingOf(msg *transport.Message, o *outgoing) error {
	*o = outgoing{iface: msg.Interface.Name, path: msg.Path, property: msg.Interface.IsProperties(), unset: msg.Unset}
	if msg.Unset {
		return nil
	}
	if msg.Object {
		byKey, err := msg.Interface.LookupObject(msg.Path)
		if err != nil {
			return err
		}
		fields, ts := map[string]any(nil), msg.Timestamp
		if v, ok := msg.Value.(map[string]any); ok {
			fields = v
		} else if fields, ts, err = payload.DecodeObject(byKey, msg.Payload); err != nil {
			return err
		}
		o.object, o.timestamp = fields, ts
		o.objTypes = make(map[string]interfaces.MappingType, len(fields))
		for k := range fields {
			m, ok := byKey[k]
			if !ok {
				return fmt.Errorf("no mapping of the object has the key %q", k)
			}
			o.objTypes[k] = m.Type
		}
		return nil
	}
	if msg.Value != nil {
		o.typ, o.value, o.timestamp = msg.Mapping.Type, msg.Value, msg.Timestamp
		return nil
	}
	dec, err := payload.Decode(msg.Mapping.Type, msg.Payload)
	if err != nil {
		return err
	}
	if dec.Unset {
		o.unset = true
		return nil
	}
	o.typ, o.value, o.timestamp = msg.Mapping.Type, dec.Value, dec.Timestamp
	return nil
}
