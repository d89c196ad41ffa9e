package wire

import (
	"fmt"
	"strconv"
)

// MessageType is the kind of a message, bits 1-3 of its flag byte.
type MessageType byte

// The message types of the protocol.
const (
	// Request is sent by a client and answered by exactly one Response with the same ID.
	Request MessageType = 0
	// Notify is sent by a client and never answered.
	Notify MessageType = 1
	// Response answers the Request with the same ID. It carries no route.
	Response MessageType = 2
	// Push is sent by the server on its own.
	Push MessageType = 3
)

// String returns the protocol name of t, such as "REQUEST", or "MessageType(n)" for a value
// that is not a message type.
func (t MessageType) String() string {
	switch t {
	case Request:
		return "REQUEST"
	case Notify:
		return "NOTIFY"
	case Response:
		return "RESPONSE"
	case Push:
		return "PUSH"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Valid reports whether t is one of the four message types.
func (t MessageType) Valid() bool { return t <= Push }

// HasID reports whether messages of type t carry an id (requests and responses).
func (t MessageType) HasID() bool { return t == Request || t == Response }

// HasRoute reports whether messages of type t carry a route (requests, notifies and pushes).
func (t MessageType) HasRoute() bool { return t == Request || t == Notify || t == Push }

// Bits of the flag byte used internally: bit 0 marks a compressed route, bits 1-3 hold the type.
const (
	flagCompressedRoute = 0x01
	flagTypeMask        = 0x0e
	flagTypeShift       = 1
)

// Optional bits of the flag byte.
const (
	// FlagGzip (bit 4) marks a gzip-compressed body. Pomelo never sets it.
	FlagGzip = 0x10
	// FlagError (bit 5) is Pitaya's error flag. Pomelo does not use it; stock clients ignore it.
	FlagError = 0x20
)

// MaxRouteLen is the longest uncompressed route: its length travels in one byte.
const MaxRouteLen = 255

// Message is a decoded message, the body of a DATA package.
type Message struct {
	// Type is the message type.
	Type MessageType
	// ID pairs a Response with its Request; only these two types carry it.
	ID uint64
	// Route is the route of a Request, Notify or Push whose route is not compressed.
	Route string
	// RouteCode is the dictionary code of the route when Compressed is set.
	RouteCode uint16
	// Compressed (flag bit 0) means the route travels as a 2-byte dictionary code. A Response
	// carries no route, so the bit is merely reported and reproduced for it.
	Compressed bool
	// Error is the 0x20 flag (Pitaya's error bit).
	Error bool
	// Gzip is the 0x10 flag. DecodeMessage only reports it and does not decompress the
	// body (Gunzip does); AppendMessage sets it only when asked to.
	Gzip bool
	// Body is the rest of the message, JSON or protobuf. DecodeMessage makes it alias its input.
	Body []byte
}

// flag returns the flag byte of m.
func (m *Message) flag() byte {
	f := byte(m.Type) << flagTypeShift
	if m.Compressed {
		f |= flagCompressedRoute
	}
	if m.Gzip {
		f |= FlagGzip
	}
	if m.Error {
		f |= FlagError
	}
	return f
}

// EncodedLen returns the number of bytes AppendMessage writes for m, or a negative number if
// m cannot be encoded.
func (m *Message) EncodedLen() int {
	if !m.Type.Valid() {
		return -1
	}
	n := 1 + len(m.Body)
	if m.Type.HasID() {
		n += VarintLen(m.ID)
	}
	if m.Type.HasRoute() {
		switch {
		case m.Compressed:
			n += 2
		case len(m.Route) > MaxRouteLen:
			return -1
		default:
			n += 1 + len(m.Route)
		}
	}
	return n
}

// AppendMessage appends the encoding of m to dst: the flag byte; for a Request or Response the
// ID as a varint; for a Request, Notify or Push the route, as RouteCode (2 bytes, big-endian)
// if Compressed is set, else as 1 length byte and Route; then Body. Fields a type does not
// carry are ignored. It returns dst unchanged and an error wrapping ErrTooLarge if Route is
// longer than 255 bytes, or ErrMalformed (and ErrUnknownType) for an invalid m.Type.
func AppendMessage(dst []byte, m *Message) ([]byte, error) {
	if !m.Type.Valid() {
		return dst, fmt.Errorf("%w: %w: message type %d", ErrMalformed, ErrUnknownType, byte(m.Type))
	}
	hasRoute := m.Type.HasRoute()
	if hasRoute && !m.Compressed && len(m.Route) > MaxRouteLen {
		return dst, fmt.Errorf("%w: route of %d bytes, at most %d allowed", ErrTooLarge, len(m.Route), MaxRouteLen)
	}
	dst = append(dst, m.flag())
	if m.Type.HasID() {
		dst = AppendVarint(dst, m.ID)
	}
	if hasRoute {
		if m.Compressed {
			dst = append(dst, byte(m.RouteCode>>8), byte(m.RouteCode))
		} else {
			dst = append(dst, byte(len(m.Route)))
			dst = append(dst, m.Route...)
		}
	}
	return append(dst, m.Body...), nil
}

// AppendMessagePackage appends m as a complete DATA package (header and message) to dst. It
// returns dst unchanged and an error as AppendMessage does, or one wrapping ErrTooLarge if the
// message is longer than MaxLength.
func AppendMessagePackage(dst []byte, m *Message) ([]byte, error) {
	n := m.EncodedLen()
	if n < 0 {
		// Let AppendMessage describe the problem.
		_, err := AppendMessage(nil, m)
		return dst, err
	}
	out, err := AppendHeader(dst, TypeData, n)
	if err != nil {
		return dst, err
	}
	return AppendMessage(out, m)
}

// DecodeMessage decodes a message, the body of a DATA package. The returned Body aliases b;
// only an uncompressed route is copied (into Route). Bits 6 and 7 of the flag byte are not
// used by any implementation and are ignored here; a server refuses them from a client (see
// ClientFlags).
//
// Every error wraps ErrMalformed; it also wraps ErrTruncated when b ends before the id, route
// length, route or route code it must hold, and ErrUnknownType for a message type above 3.
// DecodeMessage never panics.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	if len(b) == 0 {
		return m, fmt.Errorf("%w: %w: empty message", ErrMalformed, ErrTruncated)
	}
	f := b[0]
	m.Type = MessageType((f & flagTypeMask) >> flagTypeShift)
	if !m.Type.Valid() {
		return Message{}, fmt.Errorf("%w: %w: message type %d", ErrMalformed, ErrUnknownType, byte(m.Type))
	}
	m.Compressed = f&flagCompressedRoute != 0
	m.Gzip = f&FlagGzip != 0
	m.Error = f&FlagError != 0
	i := 1
	if m.Type.HasID() {
		id, n, err := ReadVarint(b[i:])
		if err != nil {
			return Message{}, fmt.Errorf("%w: message id: %w", ErrMalformed, err)
		}
		m.ID = id
		i += n
	}
	if m.Type.HasRoute() {
		if m.Compressed {
			if len(b)-i < 2 {
				return Message{}, fmt.Errorf("%w: %w: compressed route needs 2 bytes, %d left", ErrMalformed, ErrTruncated, len(b)-i)
			}
			m.RouteCode = uint16(b[i])<<8 | uint16(b[i+1])
			i += 2
		} else {
			if i >= len(b) {
				return Message{}, fmt.Errorf("%w: %w: missing route length", ErrMalformed, ErrTruncated)
			}
			n := int(b[i])
			i++
			if len(b)-i < n {
				return Message{}, fmt.Errorf("%w: %w: route of %d bytes, %d left", ErrMalformed, ErrTruncated, n, len(b)-i)
			}
			m.Route = string(b[i : i+n])
			i += n
		}
	}
	m.Body = b[i:]
	return m, nil
}
