package msghub

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	msghubv07 "github.com/connector-host/connector-host/proto/gen/astarteplatform/msghub"
)

// encode07 builds the 0.7 AstarteMessage of o with the generated Go types:
// the same message as encodeReflect on the 0.7 layout (TestEncode07
// compares the bytes for every type), without protoreflect's per-field
// lookups and boxing.
func encode07(o *outgoing) (*msghubv07.AstarteMessage, error) {
	m := &msghubv07.AstarteMessage{InterfaceName: o.iface, Path: o.path}
	switch {
	case o.unset:
		m.Payload = &msghubv07.AstarteMessage_AstarteUnset{AstarteUnset: &msghubv07.AstarteUnset{}}
	case o.object != nil:
		data := make(map[string]*msghubv07.AstarteDataTypeIndividual, len(o.object))
		for _, k := range sortedKeys(o.object) {
			u, err := individual07(o.objTypes[k], o.object[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			data[k] = u
		}
		m.Payload = &msghubv07.AstarteMessage_AstarteData{AstarteData: &msghubv07.AstarteDataType{
			Data: &msghubv07.AstarteDataType_AstarteObject{AstarteObject: &msghubv07.AstarteDataTypeObject{ObjectData: data}}}}
	default:
		u, err := individual07(o.typ, o.value)
		if err != nil {
			return nil, err
		}
		m.Payload = &msghubv07.AstarteMessage_AstarteData{AstarteData: &msghubv07.AstarteDataType{
			Data: &msghubv07.AstarteDataType_AstarteIndividual{AstarteIndividual: u}}}
	}
	if o.timestamp != nil {
		m.Timestamp = timestamp07(*o.timestamp)
	}
	return m, nil
}

func timestamp07(t time.Time) *timestamppb.Timestamp {
	return &timestamppb.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())} //nolint:gosec // below 1e9
}

// individual07 is putValue for the 0.7 value union, with its errors.
func individual07(t interfaces.MappingType, v any) (*msghubv07.AstarteDataTypeIndividual, error) {
	if _, ok := unionNumber[t]; !ok {
		return nil, fmt.Errorf("type %q has no protobuf field", t)
	}
	u := &msghubv07.AstarteDataTypeIndividual{}
	switch t {
	case interfaces.Double:
		if x, ok := v.(float64); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteDouble{AstarteDouble: x}
		}
	case interfaces.Integer:
		if x, ok := v.(int32); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteInteger{AstarteInteger: x}
		}
	case interfaces.Boolean:
		if x, ok := v.(bool); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteBoolean{AstarteBoolean: x}
		}
	case interfaces.LongInteger:
		if x, ok := v.(int64); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteLongInteger{AstarteLongInteger: x}
		}
	case interfaces.String:
		if x, ok := v.(string); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteString{AstarteString: x}
		}
	case interfaces.BinaryBlob:
		if x, ok := v.([]byte); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteBinaryBlob{AstarteBinaryBlob: x}
		}
	case interfaces.DateTime:
		if x, ok := v.(time.Time); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteDateTime{AstarteDateTime: timestamp07(x)}
		}
	case interfaces.DoubleArray:
		if x, ok := v.([]float64); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteDoubleArray{AstarteDoubleArray: &msghubv07.AstarteDoubleArray{Values: x}}
		}
	case interfaces.IntegerArray:
		if x, ok := v.([]int32); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteIntegerArray{AstarteIntegerArray: &msghubv07.AstarteIntegerArray{Values: x}}
		}
	case interfaces.BooleanArray:
		if x, ok := v.([]bool); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteBooleanArray{AstarteBooleanArray: &msghubv07.AstarteBooleanArray{Values: x}}
		}
	case interfaces.LongIntegerArray:
		if x, ok := v.([]int64); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteLongIntegerArray{AstarteLongIntegerArray: &msghubv07.AstarteLongIntegerArray{Values: x}}
		}
	case interfaces.StringArray:
		if x, ok := v.([]string); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteStringArray{AstarteStringArray: &msghubv07.AstarteStringArray{Values: x}}
		}
	case interfaces.BinaryBlobArray:
		if x, ok := v.([][]byte); ok {
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteBinaryBlobArray{AstarteBinaryBlobArray: &msghubv07.AstarteBinaryBlobArray{Values: x}}
		}
	case interfaces.DateTimeArray:
		if x, ok := v.([]time.Time); ok {
			vals := make([]*timestamppb.Timestamp, len(x))
			for k, e := range x {
				vals[k] = timestamp07(e)
			}
			u.IndividualData = &msghubv07.AstarteDataTypeIndividual_AstarteDateTimeArray{AstarteDateTimeArray: &msghubv07.AstarteDateTimeArray{Values: vals}}
		}
	}
	if u.IndividualData == nil {
		return nil, fmt.Errorf("value of Go type %T is not a %s", v, t)
	}
	return u, nil
}

// scratch07 is the outer structs of an individual 0.7 message, reused by
// one Send from message to message: the codec has marshalled a message
// when its call returns, and keeps nothing of it.
type scratch07 struct {
	msg  msghubv07.AstarteMessage
	data msghubv07.AstarteMessage_AstarteData
	dt   msghubv07.AstarteDataType
	ind  msghubv07.AstarteDataType_AstarteIndividual
	ts   timestamppb.Timestamp
}

// encode is encode07 reusing s for an individual value (objects and unsets
// go to encode07).
func (s *scratch07) encode(o *outgoing) (*msghubv07.AstarteMessage, error) {
	if o.unset || o.object != nil {
		return encode07(o)
	}
	u, err := individual07(o.typ, o.value)
	if err != nil {
		return nil, err
	}
	s.ind.AstarteIndividual = u
	s.dt.Data = &s.ind
	s.data.AstarteData = &s.dt
	s.msg.InterfaceName, s.msg.Path, s.msg.Payload, s.msg.Timestamp = o.iface, o.path, &s.data, nil
	if o.timestamp != nil {
		s.ts.Seconds, s.ts.Nanos = o.timestamp.Unix(), int32(o.timestamp.Nanosecond()) //nolint:gosec // below 1e9
		s.msg.Timestamp = &s.ts
	}
	return &s.msg, nil
}
