package wire_test

import (
	"fmt"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

// Build the DATA package that answers request 1 with a JSON body: the flag byte 04, the id as
// a varint, no route, then the body, behind a 4-byte package header.
func ExampleAppendMessage() {
	m := wire.Message{Type: wire.Response, ID: 1, Body: []byte(`{"code":200}`)}

	// Encode the message, then frame it as a DATA package.
	body, err := wire.AppendMessage(nil, &m)
	if err != nil {
		panic(err)
	}
	pkg, err := wire.AppendPackage(nil, wire.TypeData, body)
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", pkg)

	// Or in one step, into a reusable buffer, without allocating.
	buf := make([]byte, 0, 64)
	buf, err = wire.AppendMessagePackage(buf[:0], &m)
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", buf)
	// Output:
	// 04 00 00 0e 04 01 7b 22 63 6f 64 65 22 3a 32 30 30 7d
	// 04 00 00 0e 04 01 7b 22 63 6f 64 65 22 3a 32 30 30 7d
}

// Parse a frame holding several packages and decode its messages.
func ExampleSplitPackages() {
	frame := []byte{3, 0, 0, 0} // a HEARTBEAT
	frame, _ = wire.AppendMessagePackage(frame, &wire.Message{Type: wire.Push, Route: "onChat", Body: []byte(`{"msg":"hi"}`)})
	err := wire.SplitPackages(frame, 64<<10, func(t wire.PackageType, body []byte) error {
		if t != wire.TypeData {
			fmt.Println(t)
			return nil
		}
		m, err := wire.DecodeMessage(body)
		if err != nil {
			return err
		}
		fmt.Println(t, m.Type, m.Route, string(m.Body))
		return nil
	})
	fmt.Println(err)
	// Output:
	// HEARTBEAT
	// DATA PUSH onChat {"msg":"hi"}
	// <nil>
}
