// Package msghubv08 is the Astarte Message Hub protocol, wire version 0.8,
// as dynamic messages.
//
// Version 0.8 keeps the full names of 0.7 (package astarteplatform.msghub,
// AstarteMessage, MessageHubEvent, service MessageHub, ...) with other
// fields, and 0.7 is compiled to Go types registered in the global registry
// (the parent package). Two sets of Go types with the same full names cannot
// be linked into one binary, so 0.8 is not compiled to Go: `make proto`
// builds proto/msghub-0.8 into message_hub.binpb (a FileDescriptorSet,
// generated: do not edit), and this package loads it into a private
// registry. Messages are dynamicpb messages; grpc's proto codec encodes them
// like any other message.
package msghubv08

import (
	_ "embed"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/emptypb"     // imported by the 0.8 file
	_ "google.golang.org/protobuf/types/known/timestamppb" // imported by the 0.8 file
)

// Package is the protobuf package of the protocol.
const Package protoreflect.FullName = "astarteplatform.msghub"

// Path is the path of the protocol's file in the descriptor set (relative to
// proto/msghub-0.8).
const Path = "astarteplatform/msghub/message_hub.proto"

//go:embed message_hub.binpb
var rawDescriptorSet []byte

var (
	file  protoreflect.FileDescriptor
	files = new(protoregistry.Files)
	types = map[protoreflect.Name]protoreflect.MessageType{}
)

func init() {
	fd, err := load(rawDescriptorSet)
	if err != nil {
		// The descriptor set is a build artifact checked by the tests of
		// proto/; a broken one is a build error.
		panic(fmt.Sprintf("msghubv08: %v", err))
	}
	file = fd
	if err := files.RegisterFile(fd); err != nil {
		panic(fmt.Sprintf("msghubv08: %v", err))
	}
	msgs := fd.Messages()
	for k := 0; k < msgs.Len(); k++ {
		types[msgs.Get(k).Name()] = dynamicpb.NewMessageType(msgs.Get(k))
	}
}

// load parses the descriptor set and builds the file, resolving its imports
// (the well-known types) from the global registry.
func load(raw []byte) (protoreflect.FileDescriptor, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("descriptor set: %w", err)
	}
	for _, fdp := range set.GetFile() {
		if fdp.GetName() != Path {
			continue
		}
		fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Path, err)
		}
		if fd.Package() != Package {
			return nil, fmt.Errorf("%s: package %s, want %s", Path, fd.Package(), Package)
		}
		return fd, nil
	}
	return nil, fmt.Errorf("descriptor set has no %s", Path)
}

// File is the descriptor of the 0.8 protocol file.
func File() protoreflect.FileDescriptor { return file }

// Files is a registry holding only the 0.8 file (its imports resolve in
// protoregistry.GlobalFiles).
func Files() *protoregistry.Files { return files }

// Type returns the dynamic message type of a message of the protocol by its
// short name ("AstarteMessage"), or nil if there is none.
func Type(name protoreflect.Name) protoreflect.MessageType { return types[name] }

// New returns a new, empty message of the protocol by its short name. It
// panics on a name the protocol does not have (a programming error).
func New(name protoreflect.Name) *dynamicpb.Message {
	mt := types[name]
	if mt == nil {
		panic(fmt.Sprintf("msghubv08: no message %s.%s", Package, name))
	}
	return mt.New().Interface().(*dynamicpb.Message)
}

// Service is the MessageHub service.
func Service() protoreflect.ServiceDescriptor {
	return file.Services().ByName("MessageHub")
}
