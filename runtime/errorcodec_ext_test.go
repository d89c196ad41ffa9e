package runtime_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/pomelo-go/pomelo/runtime"
)

// errRoomFull is an application-defined named error with its own code.
var errRoomFull = runtime.DefineError(1001, "ROOM_FULL")

// codecCases are errors the codec must carry unchanged.
var codecCases = []*runtime.Error{
	runtime.Errorf(runtime.ErrUnknownRoute, "no handler for chat.h.nope"),
	runtime.Errorf(errRoomFull, "room %q is full", "r1"),
	runtime.NewError(403, "not your room"),
	runtime.Errorf(runtime.DefineError(500, "FROM_A_NEWER_SERVER"), "a name this build does not know"),
	runtime.Errorf(runtime.ErrClosed, ""),
	runtime.NewError(-7, "negative codes survive"),
	runtime.NewError(0, "code zero"),
	runtime.Errorf(runtime.ErrBadRequest, "unicode: 日本語 \u2028 \"quoted\""),
}

func TestErrorBodyDecodesExactlyWhatItEncodes(t *testing.T) {
	for _, ser := range []runtime.Serializer{runtime.JSON, runtime.Protobuf} {
		for _, e := range codecCases {
			got, err := runtime.DecodeErrorBody(ser.Name(), runtime.EncodeErrorBody(ser, e))
			if err != nil {
				t.Fatalf("%s: %v: decode: %v", ser.Name(), e, err)
			}
			if *got != *e {
				t.Errorf("%s: %+v came back as %+v", ser.Name(), e, got)
			}
			if !errors.Is(got, runtime.DefineError(e.Code, e.Name)) {
				t.Errorf("%s: %v does not match its own code and name after decoding", ser.Name(), got)
			}
		}
	}
}

func TestErrorProtoAndConnectDetailCarryErrorsUnchanged(t *testing.T) {
	for _, e := range codecCases {
		if got := runtime.ErrorFromProto(e.Proto()); *got != *e {
			t.Errorf("proto: %+v came back as %+v", e, got)
		}
		var got *runtime.Error
		if err := runtime.FromConnectError("s", runtime.ToConnectError(fmt.Errorf("wrapped: %w", e))); !errors.As(err, &got) || *got != *e {
			t.Errorf("connect detail: %+v came back as %v", e, err)
		}
	}
}

// The error body's bytes are the wire format of docs/PROTOCOL.md section 8,
// which stock Pomelo clients and older Go clients read.
func TestErrorBodyWireFormat(t *testing.T) {
	for _, tc := range []struct {
		ser  runtime.Serializer
		err  *runtime.Error
		want []byte
	}{
		{runtime.JSON, runtime.Errorf(runtime.ErrUnknownRoute, "no handler"), []byte(`{"code":500,"error":"UNKNOWN_ROUTE","message":"no handler"}`)},
		{runtime.JSON, runtime.NewError(1001, "no gold"), []byte(`{"code":1001,"message":"no gold"}`)},
		{runtime.JSON, runtime.Errorf(runtime.ErrClosed, ""), []byte(`{"code":500,"error":"CLOSED"}`)},
		// pomelo.sys.v1.Error: code = 1 (varint), name = 2, message = 3.
		{runtime.Protobuf, runtime.Errorf(runtime.ErrTimeout, "slow"), []byte("\x08\xf4\x03\x12\x07TIMEOUT\x1a\x04slow")},
		{runtime.Protobuf, runtime.NewError(1001, "x"), []byte("\x08\xe9\x07\x1a\x01x")},
		{runtime.Protobuf, runtime.NewError(-1, ""), []byte("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")},
	} {
		if got := runtime.EncodeErrorBody(tc.ser, tc.err); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %v encoded as %q, want %q", tc.ser.Name(), tc.err, got, tc.want)
		}
	}
}

func TestErrorBodyWithInvalidUTF8IsRepairedNotDropped(t *testing.T) {
	e := runtime.Errorf(errRoomFull, "room %s is full", "r\xff")
	for _, ser := range []runtime.Serializer{runtime.JSON, runtime.Protobuf} {
		got, err := runtime.DecodeErrorBody(ser.Name(), runtime.EncodeErrorBody(ser, e))
		if err != nil || got.Message != "room r\uFFFD is full" || !errors.Is(got, errRoomFull) {
			t.Errorf("%s: %v came back as %v, %v", ser.Name(), e, got, err)
		}
	}
}

func TestDecodeErrorBodyAcceptsWhatOtherServersSend(t *testing.T) {
	for _, tc := range []struct {
		ser, body string
		want      runtime.Error
	}{
		{runtime.SerializerJSON, `{"code":500}`, runtime.Error{Code: 500}},                                           // stock Pomelo
		{runtime.SerializerJSON, `{"message":"no code"}`, runtime.Error{Code: 500, Message: "no code"}},              // Pomelo's 500
		{runtime.SerializerJSON, `{"code":500,"name":"BAD_REQUEST"}`, runtime.Error{Code: 500, Name: "BAD_REQUEST"}}, // protojson's spelling
		{runtime.SerializerJSON, `{"code":42,"error":"X","extra":[1]}`, runtime.Error{Code: 42, Name: "X"}},
		{runtime.SerializerProtobuf, `{"code":500,"error":"INTERNAL"}`, runtime.Error{Code: 500, Name: "INTERNAL"}}, // JSON under protobuf
		{runtime.SerializerProtobuf, "\x08\xf4\x03\x22\x03abc\x12\x01N", runtime.Error{Code: 500, Name: "N"}},       // unknown field 4 skipped
	} {
		got, err := runtime.DecodeErrorBody(tc.ser, []byte(tc.body))
		if err != nil || *got != tc.want {
			t.Errorf("%s %q decoded as %+v, %v; want %+v", tc.ser, tc.body, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ ser, body string }{
		{runtime.SerializerJSON, `not json`},
		{runtime.SerializerJSON, `{"code":1.5}`},
		{runtime.SerializerJSON, `{"code":9999999999}`},
		{runtime.SerializerProtobuf, "\x08"},
	} {
		if got, err := runtime.DecodeErrorBody(tc.ser, []byte(tc.body)); err == nil {
			t.Errorf("%s %q decoded as %+v, want an error", tc.ser, tc.body, got)
		}
	}
}

func TestErrorsMatchByCodeAndName(t *testing.T) {
	decoded := runtime.ErrorFromProto(runtime.Errorf(errRoomFull, "full").Proto()) // as from another server
	for _, tc := range []struct {
		err    error
		target *runtime.Error
		want   bool
	}{
		{decoded, errRoomFull, true},
		{fmt.Errorf("join: %w", decoded), errRoomFull, true},
		{decoded, runtime.DefineError(1002, "ROOM_FULL"), false},
		{decoded, runtime.DefineError(1001, "ROOM_CLOSED"), false},
		{decoded, runtime.NewError(1001, ""), false}, // an unnamed error is another identity
		{runtime.NewError(1001, "full"), runtime.NewError(1001, ""), true},
		{runtime.Errorf(runtime.ErrNotFound, "x"), runtime.ErrNotFound, true},
		{runtime.Errorf(runtime.ErrNotFound, "x"), runtime.ErrClosed, false},
		{runtime.FromConnectError("s", connect.NewError(connect.CodeUnavailable, errors.New("dial"))), runtime.ErrUnavailable, true},
	} {
		if got := errors.Is(tc.err, tc.target); got != tc.want {
			t.Errorf("errors.Is(%v, %v) = %v, want %v", tc.err, tc.target, got, tc.want)
		}
	}
}

// An application defines its named errors once, makes them with Errorf and
// matches them with errors.Is, also after they crossed the wire.
func ExampleDefineError() {
	// Once, at package level.
	var ErrRoomFull = runtime.DefineError(1001, "ROOM_FULL")

	// In a handler or a remote.
	err := runtime.Errorf(ErrRoomFull, "room %q is full", "lobby")

	// Where the error is handled: here, on the frontend that forwarded the
	// request, or in a Go client.
	body := runtime.EncodeErrorBody(runtime.JSON, err)
	decoded, _ := runtime.DecodeErrorBody(runtime.SerializerJSON, body)
	fmt.Println(string(body))
	fmt.Println(errors.Is(fmt.Errorf("enter: %w", decoded), ErrRoomFull))
	fmt.Println(errors.Is(decoded, runtime.ErrInternal))
	// Output:
	// {"code":1001,"error":"ROOM_FULL","message":"room \"lobby\" is full"}
	// true
	// false
}
