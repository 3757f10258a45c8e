package msghubemu

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// safeCodec is grpc's proto codec with decoding panics turned into errors:
// protobuf-go's dynamicpb (the 0.8 messages) panics on some malformed map
// entries, and a bad request must fail the call, not the test process.
type safeCodec struct{ encoding.CodecV2 }

// Unmarshal decodes, recovering from a panic of the decoder.
func (c safeCodec) Unmarshal(data mem.BufferSlice, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed message: %v", r)
		}
	}()
	return c.CodecV2.Unmarshal(data, v)
}

// unmarshal is proto.Unmarshal with the same protection.
func (safeCodec) unmarshal(b []byte, m proto.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed message: %v", r)
		}
	}()
	return proto.Unmarshal(b, m)
}
