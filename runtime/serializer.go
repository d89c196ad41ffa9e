package runtime

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Serializer encodes message bodies. A client picks one in its handshake:
// JSON (protojson, the default and what stock Pomelo clients send) or binary
// protobuf.
type Serializer interface {
	// Name is the serializer's handshake name: "json" or "protobuf".
	Name() string
	// Marshal appends the encoding of m to dst.
	Marshal(dst []byte, m proto.Message) ([]byte, error)
	// Unmarshal decodes b into m.
	Unmarshal(b []byte, m proto.Message) error
}

// Serializer names used in the handshake.
const (
	SerializerJSON     = "json"
	SerializerProtobuf = "protobuf"
)

// JSON is the protojson serializer. It writes the field names as declared in
// the .proto file (so a proto mirroring an existing Pomelo JSON body keeps its
// keys), writes zero values too (stock clients read fields such as users: []
// without checking), and ignores unknown fields on input (stock clients send
// extra keys).
var JSON Serializer = &jsonSerializer{
	m: protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	u: protojson.UnmarshalOptions{DiscardUnknown: true},
}

// Protobuf is the binary protobuf serializer.
var Protobuf Serializer = protoSerializer{}

// SerializerByName returns the serializer for a handshake name; "" means
// JSON.
func SerializerByName(name string) (Serializer, error) {
	switch name {
	case "", SerializerJSON:
		return JSON, nil
	case SerializerProtobuf:
		return Protobuf, nil
	}
	return nil, fmt.Errorf("pomelo: unknown serializer %q", name)
}

type jsonSerializer struct {
	m protojson.MarshalOptions
	u protojson.UnmarshalOptions
}

func (jsonSerializer) Name() string { return SerializerJSON }

func (s jsonSerializer) Marshal(dst []byte, m proto.Message) ([]byte, error) {
	return s.m.MarshalAppend(dst, m)
}

func (s jsonSerializer) Unmarshal(b []byte, m proto.Message) error {
	if len(b) == 0 {
		// Stock clients send an empty body for a request without a message.
		proto.Reset(m)
		return nil
	}
	return s.u.Unmarshal(b, m)
}

type protoSerializer struct{}

func (protoSerializer) Name() string { return SerializerProtobuf }

func (protoSerializer) Marshal(dst []byte, m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

func (protoSerializer) Unmarshal(b []byte, m proto.Message) error {
	return proto.Unmarshal(b, m)
}
