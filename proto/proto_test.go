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

	msghubv07 "github.com/connector-host/connector-host/proto/gen/astarteplatform/msghub"
	msghubv08 "github.com/connector-host/connector-host/proto/gen/astarteplatform/msghub/v08"
	connectorv1 "github.com/connector-host/connector-host/proto/gen/connector/v1"
)

func TestGeneratedCodeIsCurrent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		source string
		// root is the import path of source ("." when empty): a buf module
		// root below proto/.
		root      string
		generated protoreflect.FileDescriptor
	}{
		{"connector/v1/connector.proto", "", connectorv1.File_connector_v1_connector_proto},
		{"astarteplatform/msghub/message_hub.proto", "", msghubv07.File_astarteplatform_msghub_message_hub_proto},
		// Message Hub 0.8: a descriptor set (proto/gen/astarteplatform/msghub/v08).
		{msghubv08.Path, "msghub-0.8", msghubv08.File()},
	}
	for _, tc := range cases {
		root := tc.root
		if root == "" {
			root = "."
		}
		t.Run(root+"/"+tc.source, func(t *testing.T) {
			t.Parallel()
			c := protocompile.Compiler{
				Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{root}}),
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
