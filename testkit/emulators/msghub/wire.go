package msghubemu

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	msghubv07 "github.com/connector-host/connector-host/proto/gen/astarteplatform/msghub"
	msghubv08 "github.com/connector-host/connector-host/proto/gen/astarteplatform/msghub/v08"
)

// Protocol is a wire version of the Message Hub protocol.
type Protocol string

// Protocol versions (docs: shared/MSGHUB.md).
const (
	// Protocol07 is astarte-message-hub-proto 0.7 (hubs 0.7.x): a value or
	// astarte_unset in AstarteMessage, the timestamp at the top level.
	Protocol07 Protocol = "0.7"
	// Protocol08 is 0.8 (hubs >= 0.8): datastream_individual,
	// datastream_object or property_individual, timestamps inside.
	Protocol08 Protocol = "0.8"
)

// Kind is the kind of payload of an AstarteMessage.
type Kind string

// Payload kinds.
const (
	// KindIndividual is one value (0.7 astarte_individual; 0.8
	// datastream_individual). A 0.7 property set is an individual too.
	KindIndividual Kind = "individual"
	// KindObject is an object (0.7 astarte_object; 0.8 datastream_object).
	KindObject Kind = "object"
	// KindProperty is a 0.8 property_individual with data.
	KindProperty Kind = "property"
	// KindUnset is a property unset (0.7 astarte_unset; 0.8
	// property_individual without data).
	KindUnset Kind = "unset"
)

// Data is an AstarteMessage in plain Go. Values are float64, int32, bool,
// int64, string, []byte, time.Time (UTC) or slices of those, by Astarte type.
type Data struct {
	Interface string
	Path      string
	Kind      Kind
	// Type and Value are the value of an individual or property.
	Type  string
	Value any
	// Object and ObjectTypes are the values and types of an object, keyed
	// by endpoint relative to Path.
	Object      map[string]any
	ObjectTypes map[string]string
	// Timestamp is the explicit timestamp, when sent.
	Timestamp *time.Time
}

// protoPackage is the protobuf package of both versions.
const protoPackage protoreflect.FullName = "astarteplatform.msghub"

// unionNumbers are the field numbers of the value union (0.7
// AstarteDataTypeIndividual, 0.8 AstarteData: the same in both).
var unionNumbers = map[string]protoreflect.FieldNumber{
	"double": 1, "integer": 2, "boolean": 3, "longinteger": 4, "string": 5, "binaryblob": 6, "datetime": 7,
	"doublearray": 8, "integerarray": 9, "booleanarray": 10, "longintegerarray": 11, "stringarray": 12,
	"binaryblobarray": 13, "datetimearray": 14,
}

var unionTypes = func() map[protoreflect.FieldNumber]string {
	m := map[protoreflect.FieldNumber]string{}
	for t, n := range unionNumbers {
		m[n] = t
	}
	return m
}()

// wire is one protocol version's message types.
type wire struct {
	protocol Protocol
	file     protoreflect.FileDescriptor
	types    func(protoreflect.Name) protoreflect.MessageType
}

func wireFor(p Protocol) (*wire, error) {
	switch p {
	case Protocol07:
		return &wire{protocol: p, file: msghubv07.File_astarteplatform_msghub_message_hub_proto,
			types: func(n protoreflect.Name) protoreflect.MessageType {
				mt, err := protoregistry.GlobalTypes.FindMessageByName(protoPackage.Append(n))
				if err != nil {
					return nil
				}
				return mt
			}}, nil
	case Protocol08:
		return &wire{protocol: p, file: msghubv08.File(), types: msghubv08.Type}, nil
	}
	return nil, fmt.Errorf("msghubemu: unknown protocol %q (0.7 or 0.8)", p)
}

// new returns an empty message of the version by short name.
func (w *wire) new(name protoreflect.Name) protoreflect.Message {
	mt := w.types(name)
	if mt == nil {
		panic(fmt.Sprintf("msghubemu: protocol %s has no message %s", w.protocol, name))
	}
	return mt.New()
}

func field(m protoreflect.Message, name protoreflect.Name) protoreflect.FieldDescriptor {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil {
		panic(fmt.Sprintf("msghubemu: %s has no field %s", m.Descriptor().FullName(), name))
	}
	return fd
}

func setTimestamp(m protoreflect.Message, t time.Time) {
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

// TypeOf returns the Astarte type of a Go value (see Data).
func TypeOf(v any) (string, error) {
	switch v.(type) {
	case float64:
		return "double", nil
	case int32:
		return "integer", nil
	case bool:
		return "boolean", nil
	case int64:
		return "longinteger", nil
	case string:
		return "string", nil
	case []byte:
		return "binaryblob", nil
	case time.Time:
		return "datetime", nil
	case []float64:
		return "doublearray", nil
	case []int32:
		return "integerarray", nil
	case []bool:
		return "booleanarray", nil
	case []int64:
		return "longintegerarray", nil
	case []string:
		return "stringarray", nil
	case [][]byte:
		return "binaryblobarray", nil
	case []time.Time:
		return "datetimearray", nil
	}
	return "", fmt.Errorf("%T is not a value of an Astarte type", v)
}

// putValue sets the union member for v.
func putValue(u protoreflect.Message, v any) error {
	t, err := TypeOf(v)
	if err != nil {
		return err
	}
	fd := u.Descriptor().Fields().ByNumber(unionNumbers[t])
	switch x := v.(type) {
	case float64:
		u.Set(fd, protoreflect.ValueOfFloat64(x))
	case int32:
		u.Set(fd, protoreflect.ValueOfInt32(x))
	case bool:
		u.Set(fd, protoreflect.ValueOfBool(x))
	case int64:
		u.Set(fd, protoreflect.ValueOfInt64(x))
	case string:
		u.Set(fd, protoreflect.ValueOfString(x))
	case []byte:
		u.Set(fd, protoreflect.ValueOfBytes(x))
	case time.Time:
		setTimestamp(u.Mutable(fd).Message(), x)
	default:
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
		}
	}
	return nil
}

// getValue reads the union: the Astarte type and the value.
func getValue(u protoreflect.Message) (string, any, error) {
	fd := u.WhichOneof(u.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return "", nil, errors.New("the value has no data")
	}
	t := unionTypes[fd.Number()]
	if t == "" {
		return "", nil, fmt.Errorf("unknown value field %d", fd.Number())
	}
	v := u.Get(fd)
	switch t {
	case "double":
		return t, v.Float(), nil
	case "integer":
		return t, int32(v.Int()), nil //nolint:gosec // an int32 field
	case "boolean":
		return t, v.Bool(), nil
	case "longinteger":
		return t, v.Int(), nil
	case "string":
		return t, v.String(), nil
	case "binaryblob":
		return t, append([]byte{}, v.Bytes()...), nil
	case "datetime":
		ts, err := getTimestamp(v.Message())
		return t, ts, err
	}
	list := v.Message().Get(v.Message().Descriptor().Fields().ByNumber(1)).List()
	n := list.Len()
	switch t {
	case "doublearray":
		out := make([]float64, n)
		for k := range out {
			out[k] = list.Get(k).Float()
		}
		return t, out, nil
	case "integerarray":
		out := make([]int32, n)
		for k := range out {
			out[k] = int32(list.Get(k).Int()) //nolint:gosec // an int32 field
		}
		return t, out, nil
	case "booleanarray":
		out := make([]bool, n)
		for k := range out {
			out[k] = list.Get(k).Bool()
		}
		return t, out, nil
	case "longintegerarray":
		out := make([]int64, n)
		for k := range out {
			out[k] = list.Get(k).Int()
		}
		return t, out, nil
	case "stringarray":
		out := make([]string, n)
		for k := range out {
			out[k] = list.Get(k).String()
		}
		return t, out, nil
	case "binaryblobarray":
		out := make([][]byte, n)
		for k := range out {
			out[k] = append([]byte{}, list.Get(k).Bytes()...)
		}
		return t, out, nil
	default: // datetimearray
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

// encode builds an AstarteMessage from d.
func (w *wire) encode(d Data) (protoreflect.Message, error) {
	m := w.new("AstarteMessage")
	m.Set(field(m, "interface_name"), protoreflect.ValueOfString(d.Interface))
	m.Set(field(m, "path"), protoreflect.ValueOfString(d.Path))
	putObject := func(mp protoreflect.Map) error {
		keys := make([]string, 0, len(d.Object))
		for k := range d.Object {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := mp.NewValue()
			if err := putValue(v.Message(), d.Object[k]); err != nil {
				return fmt.Errorf("object key %q: %w", k, err)
			}
			mp.Set(protoreflect.ValueOfString(k).MapKey(), v)
		}
		return nil
	}
	if w.protocol == Protocol07 {
		switch d.Kind {
		case KindIndividual, KindProperty:
			ind := m.Mutable(field(m, "astarte_data")).Message()
			u := ind.Mutable(field(ind, "astarte_individual")).Message()
			if err := putValue(u, d.Value); err != nil {
				return nil, err
			}
		case KindObject:
			dt := m.Mutable(field(m, "astarte_data")).Message()
			obj := dt.Mutable(field(dt, "astarte_object")).Message()
			if err := putObject(obj.Mutable(field(obj, "object_data")).Map()); err != nil {
				return nil, err
			}
		case KindUnset:
			m.Mutable(field(m, "astarte_unset"))
		default:
			return nil, fmt.Errorf("unknown kind %q", d.Kind)
		}
		if d.Timestamp != nil {
			setTimestamp(m.Mutable(field(m, "timestamp")).Message(), *d.Timestamp)
		}
		return m, nil
	}
	switch d.Kind {
	case KindIndividual:
		ds := m.Mutable(field(m, "datastream_individual")).Message()
		if err := putValue(ds.Mutable(field(ds, "data")).Message(), d.Value); err != nil {
			return nil, err
		}
		if d.Timestamp != nil {
			setTimestamp(ds.Mutable(field(ds, "timestamp")).Message(), *d.Timestamp)
		}
	case KindObject:
		ds := m.Mutable(field(m, "datastream_object")).Message()
		if err := putObject(ds.Mutable(field(ds, "data")).Map()); err != nil {
			return nil, err
		}
		if d.Timestamp != nil {
			setTimestamp(ds.Mutable(field(ds, "timestamp")).Message(), *d.Timestamp)
		}
	case KindProperty:
		p := m.Mutable(field(m, "property_individual")).Message()
		if err := putValue(p.Mutable(field(p, "data")).Message(), d.Value); err != nil {
			return nil, err
		}
	case KindUnset:
		m.Mutable(field(m, "property_individual"))
	default:
		return nil, fmt.Errorf("unknown kind %q", d.Kind)
	}
	return m, nil
}

// decode reads an AstarteMessage of the version.
func (w *wire) decode(m protoreflect.Message) (Data, error) {
	d := Data{Interface: m.Get(field(m, "interface_name")).String(), Path: m.Get(field(m, "path")).String()}
	payload := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload"))
	if payload == nil {
		return d, errors.New("the message has no payload")
	}
	readTS := func(owner protoreflect.Message) error {
		fd := field(owner, "timestamp")
		if !owner.Has(fd) {
			return nil
		}
		ts, err := getTimestamp(owner.Get(fd).Message())
		if err != nil {
			return err
		}
		d.Timestamp = &ts
		return nil
	}
	readObject := func(mp protoreflect.Map) error {
		d.Kind, d.Object, d.ObjectTypes = KindObject, map[string]any{}, map[string]string{}
		var err error
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			var t string
			var val any
			if t, val, err = getValue(v.Message()); err != nil {
				err = fmt.Errorf("object key %q: %w", k.String(), err)
				return false
			}
			d.Object[k.String()], d.ObjectTypes[k.String()] = val, t
			return true
		})
		return err
	}
	var err error
	switch payload.Name() {
	case "astarte_data": // 0.7
		dt := m.Get(payload).Message()
		which := dt.WhichOneof(dt.Descriptor().Oneofs().Get(0))
		switch {
		case which == nil:
			return d, errors.New("astarte_data has no data")
		case which.Name() == "astarte_individual":
			d.Kind = KindIndividual
			d.Type, d.Value, err = getValue(dt.Get(which).Message())
		default:
			obj := dt.Get(which).Message()
			err = readObject(obj.Get(field(obj, "object_data")).Map())
		}
		if err == nil {
			err = readTS(m)
		}
	case "astarte_unset": // 0.7
		d.Kind = KindUnset
		err = readTS(m)
	case "datastream_individual": // 0.8
		ds := m.Get(payload).Message()
		d.Kind = KindIndividual
		if !ds.Has(field(ds, "data")) {
			return d, errors.New("datastream_individual has no data")
		}
		if d.Type, d.Value, err = getValue(ds.Get(field(ds, "data")).Message()); err == nil {
			err = readTS(ds)
		}
	case "datastream_object": // 0.8
		ds := m.Get(payload).Message()
		if err = readObject(ds.Get(field(ds, "data")).Map()); err == nil {
			err = readTS(ds)
		}
	case "property_individual": // 0.8
		p := m.Get(payload).Message()
		if !p.Has(field(p, "data")) {
			d.Kind = KindUnset
			break
		}
		d.Kind = KindProperty
		d.Type, d.Value, err = getValue(p.Get(field(p, "data")).Message())
	default:
		return d, fmt.Errorf("unknown payload %s", payload.Name())
	}
	return d, err
}

// message wraps an AstarteMessage in a MessageHubEvent.
func (w *wire) messageEvent(m protoreflect.Message) proto.Message {
	ev := w.new("MessageHubEvent")
	ev.Set(field(ev, "message"), protoreflect.ValueOfMessage(m))
	return ev.Interface()
}

// errorEvent is a MessageHubEvent carrying a hub error.
func (w *wire) errorEvent(description string, source []string) proto.Message {
	ev := w.new("MessageHubEvent")
	e := ev.Mutable(field(ev, "error")).Message()
	e.Set(field(e, "description"), protoreflect.ValueOfString(description))
	list := e.Mutable(field(e, "source")).List()
	for _, s := range source {
		list.Append(protoreflect.ValueOfString(s))
	}
	return ev.Interface()
}
