package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Handshake reply codes.
const (
	// CodeOK accepts the handshake.
	CodeOK = 200
	// CodeBadHandshake rejects a handshake that is not JSON or has no "sys".
	CodeBadHandshake = 500
	// CodeOldClient rejects a client that the application's client check refused.
	CodeOldClient = 501
)

// HandshakeSys is the "sys" object of a client handshake. The real JS client sends
// {"type":"js-websocket","version":"0.0.1","rsa":{},"protoVersion":0}.
//
// Decoding is lenient, as Pomelo is: a string field may also arrive as a number (kept as its
// JSON text) or null (left empty); any other JSON type is malformed.
type HandshakeSys struct {
	// Type names the client library, such as "js-websocket".
	Type string `json:"type,omitempty"`
	// Version is the client library's version, for the application's client check.
	Version string `json:"version,omitempty"`
	// ProtoVersion is the client's pomelo-protobuf version, kept raw (clients send a number
	// or a string).
	ProtoVersion json.RawMessage `json:"protoVersion,omitempty"`
	// DictVersion is the version of the route dictionary the client already holds.
	DictVersion string `json:"dictVersion,omitempty"`
	// Serializer is the body serializer the client asks for: "json" (the default) or
	// "protobuf".
	Serializer string `json:"serializer,omitempty"`
	// RSA is the client's RSA key object, kept raw.
	RSA json.RawMessage `json:"rsa,omitempty"`
	// Resume is the session resume extension (docs/PROTOCOL.md section 10): nil when the
	// client does not ask for a resumable session (stock clients never do).
	Resume *ResumeRequest `json:"resume,omitempty"`
	// Raw is the whole "sys" object as received, for fields this struct does not name (Pitaya
	// clients send platform, libVersion, clientVersion, ...). It is not encoded.
	Raw json.RawMessage `json:"-"`
}

// handshakeSysWire is HandshakeSys as decoded from JSON, before the lenient conversions.
type handshakeSysWire struct {
	Type         json.RawMessage `json:"type"`
	Version      json.RawMessage `json:"version"`
	ProtoVersion json.RawMessage `json:"protoVersion"`
	DictVersion  json.RawMessage `json:"dictVersion"`
	Serializer   json.RawMessage `json:"serializer"`
	RSA          json.RawMessage `json:"rsa"`
	Resume       json.RawMessage `json:"resume"`
}

// ResumeRequest is sys.resume of a client handshake: {} asks for a new resumable session,
// {"token":...,"received":N} asks to resume the session of Token, the client having received
// its first Received DATA packages.
type ResumeRequest struct {
	// Token is the token of the session to resume; "" asks for a new resumable session.
	Token string `json:"token,omitempty"`
	// Received is how many DATA packages (responses and pushes) of that session the client
	// has received, across every connection of the session.
	Received uint64 `json:"received,omitempty"`
}

// MarshalJSON encodes {} for a new resumable session (the zero value), {"token":...,
// "received":N} otherwise.
func (r ResumeRequest) MarshalJSON() ([]byte, error) {
	if r == (ResumeRequest{}) {
		return []byte("{}"), nil
	}
	tok, err := json.Marshal(r.Token)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"token":%s,"received":%d}`, tok, r.Received), nil
}

// parseResume decodes sys.resume: null or absent is nil; anything but an object whose token
// is a string and whose received is a non-negative integer is an error.
func parseResume(raw json.RawMessage) (*ResumeRequest, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var w struct {
		Token    *string          `json:"token"`
		Received *json.RawMessage `json:"received"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, err
	}
	r := &ResumeRequest{}
	if w.Token != nil {
		r.Token = *w.Token
	}
	if w.Received != nil && string(*w.Received) != "null" {
		if err := json.Unmarshal(*w.Received, &r.Received); err != nil {
			return nil, fmt.Errorf("received: %w", err)
		}
	}
	return r, nil
}

// UnmarshalJSON decodes a "sys" object leniently (see HandshakeSys).
func (s *HandshakeSys) UnmarshalJSON(data []byte) error {
	var w handshakeSysWire
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	var out HandshakeSys
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{
		{"type", w.Type, &out.Type},
		{"version", w.Version, &out.Version},
		{"dictVersion", w.DictVersion, &out.DictVersion},
		{"serializer", w.Serializer, &out.Serializer},
	} {
		v, err := lenientString(f.raw)
		if err != nil {
			return fmt.Errorf("sys.%s: %w", f.name, err)
		}
		*f.dst = v
	}
	resume, err := parseResume(w.Resume)
	if err != nil {
		return fmt.Errorf("sys.resume: %w", err)
	}
	out.Resume = resume
	out.ProtoVersion = nonNull(w.ProtoVersion)
	out.RSA = nonNull(w.RSA)
	out.Raw = append(json.RawMessage(nil), data...)
	*s = out
	return nil
}

// lenientString converts a raw JSON value to a string: a string as is, a number as its text,
// null or nothing as "". Other types are an error.
func lenientString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw), nil
	}
	return "", fmt.Errorf("want a string, got %s", raw)
}

// nonNull returns raw, or nil if it is the JSON null.
func nonNull(raw json.RawMessage) json.RawMessage {
	if string(raw) == "null" {
		return nil
	}
	return raw
}

// HandshakeRequest is the body of a client's HANDSHAKE package.
type HandshakeRequest struct {
	// Sys holds what the framework reads; ParseHandshake never returns it nil.
	Sys *HandshakeSys `json:"sys"`
	// User is handed, raw, to the application's handshake hook.
	User json.RawMessage `json:"user,omitempty"`
}

// ParseHandshake decodes the body of a client's HANDSHAKE package. A body that is not a JSON
// object, or whose "sys" is missing, null or malformed, yields an error wrapping ErrMalformed,
// to be answered with CodeBadHandshake. The result does not alias body.
func ParseHandshake(body []byte) (*HandshakeRequest, error) {
	var h HandshakeRequest
	if err := json.Unmarshal(body, &h); err != nil {
		return nil, fmt.Errorf("%w: handshake: %w", ErrMalformed, err)
	}
	if h.Sys == nil {
		return nil, fmt.Errorf("%w: handshake without \"sys\"", ErrMalformed)
	}
	h.User = nonNull(h.User)
	return &h, nil
}

// HandshakeResponseSys is the "sys" object of the server's handshake reply.
type HandshakeResponseSys struct {
	// Heartbeat is the heartbeat interval in seconds.
	Heartbeat int `json:"heartbeat"`
	// Dict maps routes to their codes (see Dict.Map), when the dictionary is sent.
	Dict map[string]uint16 `json:"dict,omitempty"`
	// UseDict tells the client to compress routes with Dict.
	UseDict bool `json:"useDict,omitempty"`
	// DictVersion is the dictionary's version (see Dict.Version).
	DictVersion string `json:"dictVersion,omitempty"`
	// Serializer is the body serializer in use: "json" or "protobuf".
	Serializer string `json:"serializer,omitempty"`
	// Resume answers a handshake that carried sys.resume (docs/PROTOCOL.md section 10); nil
	// otherwise, so a stock client's reply is unchanged.
	Resume *ResumeReply `json:"resume,omitempty"`
}

// ResumeReply is sys.resume of the server's handshake reply.
type ResumeReply struct {
	// Token resumes the session on the next connection; it is valid for one use.
	Token string `json:"token"`
	// Resumed reports that the connection continues the session of the request's token; false
	// means a new session.
	Resumed bool `json:"resumed"`
}

// HandshakeResponse is the body of the server's HANDSHAKE package.
type HandshakeResponse struct {
	// Code is CodeOK, CodeBadHandshake or CodeOldClient.
	Code int `json:"code"`
	// Sys is set on success.
	Sys *HandshakeResponseSys `json:"sys,omitempty"`
	// User is the result of the application's handshake hook, raw JSON.
	User json.RawMessage `json:"user,omitempty"`
}

// Marshal returns the JSON encoding of h, such as {"code":200,"sys":{"heartbeat":3}} or
// {"code":500}. A User that is not valid JSON is left out rather than corrupting the reply.
func (h *HandshakeResponse) Marshal() []byte {
	v := *h
	if len(bytes.TrimSpace(v.User)) == 0 || !json.Valid(v.User) {
		v.User = nil
	}
	b, err := json.Marshal(&v)
	if err != nil {
		// Unreachable: every field is plain data and User was validated.
		return fmt.Appendf(nil, `{"code":%d}`, v.Code)
	}
	return b
}

// kickBody is the JSON body of a KICK package.
type kickBody struct {
	Reason string `json:"reason"`
}

// KickBody returns the JSON body of a KICK package, {"reason":"..."}, with reason escaped as
// a JSON string (invalid UTF-8 becomes U+FFFD).
func KickBody(reason string) []byte {
	b, err := json.Marshal(kickBody{Reason: reason})
	if err != nil {
		// Unreachable: a struct holding one string always encodes.
		return []byte(`{"reason":""}`)
	}
	return b
}

// ParseKick decodes the body of a KICK package and returns its reason. An empty body (what
// Pitaya sends) and an object without a reason give "" and no error. A body that is not a
// JSON object, or whose reason is not a string, yields an error wrapping ErrMalformed.
func ParseKick(body []byte) (reason string, err error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return "", nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return "", fmt.Errorf("%w: kick: %w", ErrMalformed, err)
	}
	if raw == nil {
		return "", fmt.Errorf("%w: kick body is null", ErrMalformed)
	}
	r, ok := raw["reason"]
	if !ok || string(r) == "null" {
		return "", nil
	}
	if err := json.Unmarshal(r, &reason); err != nil {
		return "", fmt.Errorf("%w: kick reason: %w", ErrMalformed, err)
	}
	return reason, nil
}
