package client

import (
	"errors"
	"fmt"
	"strconv"

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

// decodeError decodes the body of a response carrying the error flag into the *runtime.Error
// the server sent, with runtime.DecodeErrorBody, the codec the server encodes it with.
func decodeError(serializer string, body []byte) error {
	e, err := runtime.DecodeErrorBody(serializer, body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return e
}
