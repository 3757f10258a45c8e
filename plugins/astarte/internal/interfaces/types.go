// Package interfaces parses and validates Astarte interface definitions
// (the JSON documents that describe what a device sends and receives), builds
// the device introspection and resolves concrete data paths to mappings.
package interfaces

// Type is the kind of an interface: a stream of samples or a set of
// persistent properties.
type Type string

// Interface types.
const (
	Datastream Type = "datastream"
	Properties Type = "properties"
)

// Ownership tells who publishes data on an interface.
type Ownership string

// Interface ownerships.
const (
	// DeviceOwned interfaces are published by the device.
	DeviceOwned Ownership = "device"
	// ServerOwned interfaces are published by Astarte to the device.
	ServerOwned Ownership = "server"
)

// Aggregation tells whether the mappings of an interface are sent one by one
// or together as an object.
type Aggregation string

// Interface aggregations.
const (
	Individual Aggregation = "individual"
	Object     Aggregation = "object"
)

// Reliability is the delivery guarantee of a datastream mapping.
type Reliability string

// Mapping reliabilities.
const (
	Unreliable Reliability = "unreliable"
	Guaranteed Reliability = "guaranteed"
	Unique     Reliability = "unique"
)

// Retention tells what happens to a datastream message that cannot be
// delivered right away.
type Retention string

// Mapping retentions.
const (
	// Discard drops the message (the send fails while disconnected).
	Discard Retention = "discard"
	// Volatile keeps the message in a bounded memory queue.
	Volatile Retention = "volatile"
	// Stored keeps the message in the durable on-disk queue.
	Stored Retention = "stored"
)

// DatabaseRetentionPolicy tells Astarte whether stored data expires.
type DatabaseRetentionPolicy string

// Database retention policies.
const (
	NoTTL  DatabaseRetentionPolicy = "no_ttl"
	UseTTL DatabaseRetentionPolicy = "use_ttl"
)

// MappingType is the Astarte type of the values of a mapping.
type MappingType string

// The 14 Astarte mapping types.
const (
	Double           MappingType = "double"
	Integer          MappingType = "integer"
	Boolean          MappingType = "boolean"
	LongInteger      MappingType = "longinteger"
	String           MappingType = "string"
	BinaryBlob       MappingType = "binaryblob"
	DateTime         MappingType = "datetime"
	DoubleArray      MappingType = "doublearray"
	IntegerArray     MappingType = "integerarray"
	BooleanArray     MappingType = "booleanarray"
	LongIntegerArray MappingType = "longintegerarray"
	StringArray      MappingType = "stringarray"
	BinaryBlobArray  MappingType = "binaryblobarray"
	DateTimeArray    MappingType = "datetimearray"
)

// MappingTypes lists all 14 mapping types: the 7 scalars, then their arrays.
func MappingTypes() []MappingType {
	return []MappingType{
		Double, Integer, Boolean, LongInteger, String, BinaryBlob, DateTime,
		DoubleArray, IntegerArray, BooleanArray, LongIntegerArray, StringArray, BinaryBlobArray, DateTimeArray,
	}
}

var arrayOf = map[MappingType]MappingType{
	DoubleArray:      Double,
	IntegerArray:     Integer,
	BooleanArray:     Boolean,
	LongIntegerArray: LongInteger,
	StringArray:      String,
	BinaryBlobArray:  BinaryBlob,
	DateTimeArray:    DateTime,
}

// Valid reports whether t is one of the 14 Astarte types.
func (t MappingType) Valid() bool {
	switch t {
	case Double, Integer, Boolean, LongInteger, String, BinaryBlob, DateTime:
		return true
	}
	_, ok := arrayOf[t]
	return ok
}

// IsArray reports whether t is one of the array types.
func (t MappingType) IsArray() bool {
	_, ok := arrayOf[t]
	return ok
}

// Element is the scalar type of an array type, or t itself for a scalar.
func (t MappingType) Element() MappingType {
	if e, ok := arrayOf[t]; ok {
		return e
	}
	return t
}

// Limits of values and definitions.
const (
	// MaxNameLength is the longest interface name.
	MaxNameLength = 128
	// MaxMappings is the largest number of mappings of one interface.
	MaxMappings = 1024
	// MaxEndpointSegments is the deepest endpoint.
	MaxEndpointSegments = 64
	// MaxBytes is the largest string or binary blob value, in bytes.
	MaxBytes = 65536
	// MaxArrayItems is the largest number of items of an array value.
	MaxArrayItems = 1024
	// MinDatabaseRetentionTTL is the smallest database_retention_ttl, in seconds.
	MinDatabaseRetentionTTL = 60
	// MaxDefinitionSize is the largest interface JSON document accepted.
	MaxDefinitionSize = 4 << 20
)
