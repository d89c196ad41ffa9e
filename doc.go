// Package pomelo is a Pomelo-style distributed game server framework for Go,
// driven by protobuf IDL. This package's App assembles one server: New with
// a Config, registrations with the generated Register functions, then
// Serve; RunCluster runs every server of a cluster file in one process. The
// types generated code targets live in package runtime
// (github.com/pomelo-go/pomelo/runtime) and its subpackages; the protoc
// plugin that turns annotated services into Go is protoc-gen-pomelo; gen/
// holds the generated code of the protos under proto/.
//
// Regenerate gen/ after editing a .proto file, from the repository root:
//
//	go generate ./...
//
// which runs buf generate (buf is pinned in tools/go.mod). A test fails when
// the committed gen/ is stale.
package pomelo

//go:generate go tool -modfile=tools/go.mod buf generate
