package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
)

// This file is the one codec of *Error: to and from pomelo.sys.v1.Error (in
// forwarded responses and in the detail of remote call errors), and to and
// from the body of a failed response as clients see it (docs/PROTOCOL.md
// section 8). The server, the cluster and the Go client all use it.

// Proto returns e as a pomelo.sys.v1.Error. Strings that are not UTF-8 are
// made valid (invalid bytes become U+FFFD, as encoding/json does), since a
// protobuf string must be UTF-8.
func (e *Error) Proto() *sysv1.Error {
	return &sysv1.Error{Code: e.Code, Name: strings.ToValidUTF8(e.Name, "\uFFFD"), Message: strings.ToValidUTF8(e.Message, "\uFFFD")}
}

// ErrorFromProto returns the *Error that p carries: its code, name and
// message, unchanged, names this server does not know included.
func ErrorFromProto(p *sysv1.Error) *Error {
	return &Error{Code: p.GetCode(), Name: p.GetName(), Message: p.GetMessage()}
}

// errorBodyJSON is the JSON body of a failed response:
// {"code":500,"error":"UNKNOWN_ROUTE","message":"..."}; application errors
// leave out "error".
type errorBodyJSON struct {
	Code    int32  `json:"code"`
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

// EncodeErrorBody encodes e as the body of a failed response in the
// serializer ser: a pomelo.sys.v1.Error in binary protobuf, otherwise JSON
// {"code":500,"error":"UNKNOWN_ROUTE","message":"..."} (application errors
// leave out "error"). DecodeErrorBody reads it back.
func EncodeErrorBody(ser Serializer, e *Error) []byte {
	if ser.Name() == SerializerProtobuf {
		b, err := proto.Marshal(e.Proto())
		if err != nil { // cannot happen: Proto's strings are valid UTF-8
			panic(fmt.Sprintf("pomelo: encode error body: %v", err))
		}
		return b
	}
	b, _ := json.Marshal(errorBodyJSON{Code: e.Code, Error: e.Name, Message: e.Message}) // cannot fail
	return b
}

// errorBodyJSONIn is errorBodyJSON as decoded: a missing code is Pomelo's
// 500, and "name" is accepted for "error", as protojson spells the field of
// pomelo.sys.v1.Error.
type errorBodyJSONIn struct {
	Code    *json.Number `json:"code"`
	Error   string       `json:"error"`
	Name    string       `json:"name"`
	Message string       `json:"message"`
}

// DecodeErrorBody decodes the body of a failed response, encoded in the
// serializer named serializer (SerializerJSON or SerializerProtobuf), into
// the *Error it carries. With protobuf, a body that is not a
// pomelo.sys.v1.Error but is valid JSON is read as JSON; a JSON body without
// a code has Pomelo's 500. Names it does not know are kept as they are.
func DecodeErrorBody(serializer string, body []byte) (*Error, error) {
	if serializer == SerializerProtobuf {
		var p sysv1.Error
		err := proto.Unmarshal(body, &p)
		if err == nil {
			return ErrorFromProto(&p), nil
		}
		if !json.Valid(body) {
			return nil, fmt.Errorf("undecodable error response: %w", err)
		}
	}
	var je errorBodyJSONIn
	if err := json.Unmarshal(body, &je); err != nil {
		return nil, fmt.Errorf("undecodable error response %q: %w", body, err)
	}
	name := je.Error
	if name == "" {
		name = je.Name
	}
	code := int64(CodeFrameworkError)
	if je.Code != nil {
		c, err := strconv.ParseInt(je.Code.String(), 10, 32)
		if err != nil {
			return nil, errors.New("error response with code " + je.Code.String())
		}
		code = c
	}
	return &Error{Code: int32(code), Name: name, Message: je.Message}, nil
}
