package runtime

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"

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
	if !utf8.Valid(b) {
		b = repairUTF8(b)
	}
	return s.u.Unmarshal(b, m)
}

// repairUTF8 makes b valid UTF-8. The stock Pomelo JavaScript client
// encodes a character outside the Basic Multilingual Plane (an emoji) as
// two 3-byte sequences, one per UTF-16 surrogate (CESU-8), which protojson
// rejects: such pairs are joined into the proper 4-byte sequence, and any
// other invalid byte becomes U+FFFD, as Pomelo's own decoder would.
func repairUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if hi, ok := surrogate(b[i:], 0xD800); ok {
			if lo, ok := surrogate(b[i+3:], 0xDC00); ok {
				out = utf8.AppendRune(out, utf16.DecodeRune(hi, lo))
				i += 6
				continue
			}
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
			i++
			continue
		}
		out = append(out, b[i:i+n]...)
		i += n
	}
	return out
}

// surrogate decodes a 3-byte encoded UTF-16 surrogate in the range
// [base, base+0x400).
func surrogate(b []byte, base rune) (rune, bool) {
	if len(b) < 3 || b[0] != 0xED || b[1]&0xC0 != 0x80 || b[2]&0xC0 != 0x80 {
		return 0, false
	}
	r := rune(b[0]&0x0F)<<12 | rune(b[1]&0x3F)<<6 | rune(b[2]&0x3F)
	return r, r >= base && r < base+0x400
}

type protoSerializer struct{}

func (protoSerializer) Name() string { return SerializerProtobuf }

func (protoSerializer) Marshal(dst []byte, m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

func (protoSerializer) Unmarshal(b []byte, m proto.Message) error {
	return proto.Unmarshal(b, m)
}
