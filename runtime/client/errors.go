package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pomelo-go/pomelo/runtime"
)

// Why a connection ended, as returned by Err and by the calls that were pending or are made
// afterwards. A kick is reported as a *KickError, a refused handshake as a *HandshakeError.
var (
	// ErrClosed reports a connection closed by Close.
	ErrClosed = errors.New("pomelo client: closed")
	// ErrConnectionLost reports a connection that broke: the server closed it, or reading or
	// writing failed. The underlying error is wrapped with it.
	ErrConnectionLost = errors.New("pomelo client: connection lost")
	// ErrHeartbeatTimeout reports a connection closed by the client because nothing arrived
	// from the server for twice the heartbeat interval.
	ErrHeartbeatTimeout = errors.New("pomelo client: heartbeat timeout")
	// ErrProtocol reports a connection closed because the server sent something the protocol
	// does not allow, such as an undecodable message. The detail is wrapped with it.
	ErrProtocol = errors.New("pomelo client: protocol error")
)

// KickError reports a connection the server closed with a KICK.
type KickError struct {
	// Reason is the reason from the KICK body, such as "kick" or "relogin".
	Reason string
}

// Error implements error.
func (e *KickError) Error() string {
	return "pomelo client: kicked by the server: " + strconv.Quote(e.Reason)
}

// HandshakeError reports a handshake the server refused.
type HandshakeError struct {
	// Code is the reply's code: wire.CodeBadHandshake (500), wire.CodeOldClient (501), or
	// another non-200 code.
	Code int
}

// Error implements error.
func (e *HandshakeError) Error() string {
	return fmt.Sprintf("pomelo client: handshake refused with code %d", e.Code)
}

// jsonError is the JSON body of an error response: {"code":500,"error":"UNKNOWN_ROUTE",
// "message":"..."}. "name" is accepted for "error", as protojson spells the field of
// pomelo.sys.v1.Error.
type jsonError struct {
	Code    *json.Number `json:"code"`
	Error   string       `json:"error"`
	Name    string       `json:"name"`
	Message string       `json:"message"`
}

// decodeError decodes the body of a response carrying the error flag into a *runtime.Error.
// With the protobuf serializer the body is a pomelo.sys.v1.Error message (code = 1, name = 2,
// message = 3); a body that is not one but is valid JSON is read as JSON.
func decodeError(serializer string, body []byte) error {
	if serializer == runtime.SerializerProtobuf {
		if e, err := decodeProtoError(body); err == nil {
			return e
		} else if !json.Valid(body) {
			return fmt.Errorf("%w: undecodable error response: %w", ErrProtocol, err)
		}
	}
	var je jsonError
	if err := json.Unmarshal(body, &je); err != nil {
		return fmt.Errorf("%w: undecodable error response %q: %w", ErrProtocol, body, err)
	}
	e := &runtime.Error{Code: runtime.CodeFrameworkError, Name: je.Error, Message: je.Message}
	if e.Name == "" {
		e.Name = je.Name
	}
	if je.Code != nil {
		c, err := strconv.ParseInt(je.Code.String(), 10, 32)
		if err != nil {
			return fmt.Errorf("%w: error response with code %s", ErrProtocol, je.Code.String())
		}
		e.Code = int32(c)
	}
	return e
}

// decodeProtoError decodes a binary pomelo.sys.v1.Error. It reads the wire format directly,
// so that this package does not depend on generated code.
func decodeProtoError(b []byte) (*runtime.Error, error) {
	e := &runtime.Error{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			e.Code = int32(v)
			b = b[n:]
		case (num == 2 || num == 3) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			if num == 2 {
				e.Name = string(v)
			} else {
				e.Message = string(v)
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return e, nil
}
