// Command protoc-gen-pomelo is a protoc plugin that generates Pomelo route
// constants, handler and remote service APIs, typed clients and typed push
// routes from services annotated with the pomelo.v1 options
// (proto/pomelo/v1/options.proto). See package generator for what it writes.
//
// It runs from buf.gen.yaml, next to protoc-gen-go; its REMOTE services are
// Connect services it generates itself, so protoc-gen-connect-go is not run
// on annotated protos. A project made by `pomelo new` declares it as a Go
// tool in its go.mod (tool github.com/pomelo-go/pomelo/protoc-gen-pomelo)
// and runs it as one:
//
//	plugins:
//	  - local: ["go", "tool", "protoc-gen-pomelo"]
//	    out: gen
//	    opt: paths=source_relative
//
// (this repository's own buf.gen.yaml runs it from source, with
// ["go", "run", "./protoc-gen-pomelo"]).
//
// It accepts protoc-gen-go's parameters (paths, module, M...).
package main

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/compiler/protogen"

	"github.com/pomelo-go/pomelo/protoc-gen-pomelo/generator"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("protoc-gen-pomelo v" + generator.Version)
		return
	}
	if len(os.Args) != 1 {
		fmt.Fprintln(os.Stderr, "protoc-gen-pomelo is a protoc plugin: run it from buf generate or protoc (flags: --version)")
		os.Exit(2)
	}
	protogen.Options{}.Run(generator.Generate)
}
