// Package proto_test checks that the committed generated code matches the
// .proto sources: compiling the sources must give exactly the descriptors
// embedded in proto/gen. Run `make proto` after editing a .proto file.
package proto_test

import (
	"context"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	connectorv1 "github.com/connector-host/connector-host/proto/gen/connector/v1"
)

func TestGeneratedCodeIsCurrent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		source    string
		generated protoreflect.FileDescriptor
	}{
		{"connector/v1/connector.proto", connectorv1.File_connector_v1_connector_proto},
	}
	for _, tc := range cases {
		t.Run(tc.source, func(t *testing.T) {
			t.Parallel()
			c := protocompile.Compiler{
				Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{"."}}),
			}
			files, err := c.Compile(context.Background(), tc.source)
			if err != nil {
				t.Fatalf("compiling %s: %v", tc.source, err)
			}
			fromSource := protodesc.ToFileDescriptorProto(files[0])
			committed := protodesc.ToFileDescriptorProto(tc.generated)
			strip(fromSource)
			strip(committed)
			if !proto.Equal(fromSource, committed) {
				t.Fatalf("proto/gen is stale for %s: run `make proto` and commit the result", tc.source)
			}
		})
	}
}

// strip drops what the code generator leaves out of the embedded
// descriptor (source locations).
func strip(fd *descriptorpb.FileDescriptorProto) {
	fd.SourceCodeInfo = nil
}
