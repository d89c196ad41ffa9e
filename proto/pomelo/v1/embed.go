// Package pomelov1proto holds the source of pomelo/v1/options.proto, the
// annotations user protos import, so that `pomelo new` vendors the very file
// this directory defines: the .proto stays the one source of truth.
package pomelov1proto

import _ "embed"

// OptionsProto is the text of options.proto.
//
//go:embed options.proto
var OptionsProto []byte
