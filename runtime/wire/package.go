package wire

import (
	"fmt"
	"strconv"
)

// PackageType is the first byte of a package: what its body holds.
type PackageType byte

// The package types of the protocol.
const (
	// TypeHandshake carries a JSON handshake, in both directions.
	TypeHandshake PackageType = 1
	// TypeHandshakeAck is sent by the client, with an empty body, once it accepted the handshake.
	TypeHandshakeAck PackageType = 2
	// TypeHeartbeat has an empty body and is sent in both directions.
	TypeHeartbeat PackageType = 3
	// TypeData carries a message (see [Message]).
	TypeData PackageType = 4
	// TypeKick is sent by the server, with a JSON body {"reason":"..."}, before it closes.
	TypeKick PackageType = 5
)

// String returns the protocol name of t, such as "HANDSHAKE" or "DATA", or "PackageType(n)"
// for a value that is not a package type.
func (t PackageType) String() string {
	switch t {
	case TypeHandshake:
		return "HANDSHAKE"
	case TypeHandshakeAck:
		return "HANDSHAKE_ACK"
	case TypeHeartbeat:
		return "HEARTBEAT"
	case TypeData:
		return "DATA"
	case TypeKick:
		return "KICK"
	}
	return "PackageType(" + strconv.Itoa(int(t)) + ")"
}

// Valid reports whether t is one of the five package types.
func (t PackageType) Valid() bool { return t >= TypeHandshake && t <= TypeKick }

// HeaderLen is the length of a package header: 1 type byte and 3 length bytes.
const HeaderLen = 4

// MaxLength is the largest body length a package header can express (2^24-1).
const MaxLength = 1<<24 - 1

// Prebuilt packages with an empty body. They are shared: do not modify them.
var (
	// HandshakeAckPackage is the complete HANDSHAKE_ACK package a client sends.
	HandshakeAckPackage = []byte{byte(TypeHandshakeAck), 0, 0, 0}
	// HeartbeatPackage is the complete HEARTBEAT package, sent in both directions.
	HeartbeatPackage = []byte{byte(TypeHeartbeat), 0, 0, 0}
)

// AppendHeader appends the 4-byte header of a package of type t whose body is n bytes long,
// for writers that append the body themselves. It returns dst unchanged and an error wrapping
// ErrUnknownType for an invalid t, ErrTooLarge if n > MaxLength, or ErrMalformed if n < 0.
func AppendHeader(dst []byte, t PackageType, n int) ([]byte, error) {
	if !t.Valid() {
		return dst, fmt.Errorf("%w: package type %d", ErrUnknownType, byte(t))
	}
	if n < 0 {
		return dst, fmt.Errorf("%w: negative body length %d", ErrMalformed, n)
	}
	if n > MaxLength {
		return dst, fmt.Errorf("%w: package body of %d bytes, at most %d allowed", ErrTooLarge, n, MaxLength)
	}
	return append(dst, byte(t), byte(n>>16), byte(n>>8), byte(n)), nil
}

// AppendPackage appends a package of type t with the given body (header then body) to dst.
// It returns dst unchanged and an error wrapping ErrTooLarge if len(body) > MaxLength, or
// ErrUnknownType for an invalid t.
func AppendPackage(dst []byte, t PackageType, body []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, t, len(body))
	if err != nil {
		return dst, err
	}
	return append(dst, body...), nil
}

// parseHeader decodes a 4-byte header. h must hold at least HeaderLen bytes.
func parseHeader(h []byte) (PackageType, int) {
	return PackageType(h[0]), int(h[1])<<16 | int(h[2])<<8 | int(h[3])
}

// checkHeader applies the checks every package reader makes on a header, in this order: the
// body length against maxBody (before anything else, so that an oversized package is rejected
// whatever else is wrong with it), then the type.
func checkHeader(t PackageType, n, maxBody int) error {
	if n > maxBody {
		return fmt.Errorf("%w: package body of %d bytes, at most %d allowed", ErrTooLarge, n, maxBody)
	}
	if !t.Valid() {
		return fmt.Errorf("%w: package type %d", ErrUnknownType, byte(t))
	}
	return nil
}

// effectiveMax maps the maxBody argument of the readers to the limit it stands for.
func effectiveMax(maxBody int) int {
	if maxBody <= 0 || maxBody > MaxLength {
		return MaxLength
	}
	return maxBody
}

// SplitPackages parses every complete package in buf, in order (a WebSocket frame may carry
// several packages back to back), and calls fn with the type and body of each. The body
// aliases buf. An empty buf holds no packages and is not an error.
//
// For each header, a body longer than maxBody (maxBody <= 0 means MaxLength) yields an error
// wrapping ErrTooLarge, checked before anything else; then a type outside 1..5 yields
// ErrUnknownType, and a package that runs past the end of buf (or a trailing partial header)
// yields ErrTruncated. SplitPackages stops at the first error, including the first non-nil
// error returned by fn, which it returns as is. Packages before the faulty one have already
// been passed to fn.
func SplitPackages(buf []byte, maxBody int, fn func(t PackageType, body []byte) error) error {
	maxBody = effectiveMax(maxBody)
	for off := 0; off < len(buf); {
		rest := buf[off:]
		if len(rest) < HeaderLen {
			return fmt.Errorf("%w: %d bytes of a package header at offset %d", ErrTruncated, len(rest), off)
		}
		t, n := parseHeader(rest)
		if err := checkHeader(t, n, maxBody); err != nil {
			return err
		}
		if len(rest)-HeaderLen < n {
			return fmt.Errorf("%w: package at offset %d announces %d body bytes, %d present",
				ErrTruncated, off, n, len(rest)-HeaderLen)
		}
		if err := fn(t, rest[HeaderLen:HeaderLen+n:HeaderLen+n]); err != nil {
			return err
		}
		off += HeaderLen + n
	}
	return nil
}
