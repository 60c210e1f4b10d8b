package main

// encode turns protojson into binary proto with the Go protos istiod's go-control-plane carries
// (every Envoy extension type is linked in through istio.io/istio). Binary, because Envoy's JSON
// loader and istiod's jsonpb disagree on some well-known types (Envoy refuses "value" in an Any
// of google.protobuf.Empty): the binary form is what both mean. Used for the bootstrap and the
// DiscoveryResponse files the test Envoy reads instead of ADS.

import (
	"encoding/json"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "istio.io/istio/pkg/config/xds" // registers every Envoy extension type istiod knows
)

// encodeJob is one file to write: Message (a full proto name) from JSON to Out.
type encodeJob struct {
	Message string          `json:"message"`
	JSON    json.RawMessage `json:"json"`
	Out     string          `json:"out"`
}

func encodeAll(jobs []encodeJob) error {
	for _, j := range jobs {
		if err := encode(j.Message, j.JSON, j.Out); err != nil {
			return fmt.Errorf("%s: %v", j.Out, err)
		}
	}
	return nil
}

func encode(message string, js []byte, out string) error {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(message))
	if err != nil {
		return fmt.Errorf("%s: %v", message, err)
	}
	m := mt.New().Interface()
	if err := protojson.Unmarshal(js, m); err != nil {
		return err
	}
	// Envoy's own constraints (protoc-gen-validate), before Envoy sees it.
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	pb, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(out, pb, 0o644)
}
