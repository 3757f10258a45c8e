package msghub

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// safeCodec is grpc's proto codec with decoding panics turned into errors.
// The 0.8 messages are dynamicpb messages, and protobuf-go's dynamicpb
// (v1.36.12) panics on some malformed map entries (a key of the wrong wire
// type) where generated code returns an error: a bad event from the hub must
// fail the stream, not the plugin.
type safeCodec struct{ encoding.CodecV2 }

func newSafeCodec() safeCodec { return safeCodec{encoding.GetCodecV2("proto")} }

// Unmarshal decodes, recovering from a panic of the decoder.
func (c safeCodec) Unmarshal(data mem.BufferSlice, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed message: %v", r)
		}
	}()
	return c.CodecV2.Unmarshal(data, v)
}

// unmarshalSafe is proto.Unmarshal with the same protection.
func unmarshalSafe(b []byte, m proto.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed message: %v", r)
		}
	}()
	return proto.Unmarshal(b, m)
}
