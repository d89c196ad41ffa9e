// Package pomelo is a Pomelo-style distributed game server framework for Go,
// driven by protobuf IDL. This package's App assembles one server: New with
// a Config, registrations with the generated Register functions, then
// Serve; RunCluster runs every server of a cluster file in one process. The
// types generated code targets live in package runtime
// (github.com/pomelo-go/pomelo/runtime) and its subpackages; the protoc
// plugin that turns annotated services into Go is protoc-gen-pomelo; gen/
// holds the generated code of the protos under proto/.
//
// docs/GUIDE.md in the repository takes a project of one's own from
// `pomelo new` to a cluster; the Example below is the quick start.
//
// Naming: package runtime has the standard library's name, so an
// application does not import it. This package gives the names handlers
// use under its own: Session, Error, Errorf, DefineError, NewError, the named
// errors (ErrNotBound, ...), Filter, Request, WithRouteKey. They are the
// runtime package's (type aliases, the same sentinels), so code written
// with them implements the generated interfaces. Generated code imports
// runtime itself; it needs nothing of the standard library's runtime.
//
// Regenerate gen/ after editing a .proto file, from the repository root:
//
//	go generate ./...
//
// which runs buf generate (buf is pinned in tools/go.mod) twice: with
// buf.gen.yaml for the messages and the protoc-gen-pomelo APIs of every
// proto, and with buf.gen.sys.yaml for the Connect API of the framework's own
// sys services only. A test fails when the committed gen/ is stale.
package pomelo

//go:generate go tool -modfile=tools/go.mod buf generate
//go:generate go tool -modfile=tools/go.mod buf generate --template buf.gen.sys.yaml --path proto/pomelo/sys
