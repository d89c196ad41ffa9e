// Package wire is a pure codec for the client wire protocol of NetEase Pomelo 2.2.7
// (the hybridconnector protocol, as encoded by the npm package pomelo-protocol 0.1.6).
//
// The protocol has two layers. The package layer frames everything:
//
//	type (1 byte) | length (3 bytes, big-endian) | body (length bytes)
//
// The message layer is the body of a DATA package:
//
//	flag (1 byte) | id (varint; request and response only) | route (request, notify, push) | body
//
// Besides the two layers the package has helpers for the JSON handshake and kick bodies and
// the route dictionary that lets routes travel as 2-byte codes.
//
// Everything here works on byte slices and does no I/O, except [Reader], which reads packages
// from a byte stream such as a raw TCP connection. Decoders never panic on any input; their
// errors wrap the sentinel errors [ErrTooLarge], [ErrUnknownType], [ErrTruncated] and
// [ErrMalformed], so callers can test them with errors.Is.
package wire

import "errors"

// Sentinel errors. Functions of this package wrap them with details; test with errors.Is.
var (
	// ErrTooLarge reports a package body, route or dictionary over its size limit.
	ErrTooLarge = errors.New("wire: too large")
	// ErrUnknownType reports a package type outside 1..5 or a message type outside 0..3.
	ErrUnknownType = errors.New("wire: unknown type")
	// ErrTruncated reports input that ends before the structure it announces is complete.
	ErrTruncated = errors.New("wire: truncated")
	// ErrMalformed reports input that cannot be decoded, or a value that cannot be encoded.
	ErrMalformed = errors.New("wire: malformed")
)
