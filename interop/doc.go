// Package interop holds interoperability tests only: a frontend built with
// this framework is driven by the real Pomelo JavaScript client
// (pomelo-jsclient-websocket and pomelo-protocol, run under node with the ws
// package, see js/harness.js), and checked at the wire level against the
// compatibility checklist of docs/PROTOCOL.md section 9.
//
// The JavaScript tests need node and the packages pinned in js/package.json:
//
//	npm install --prefix interop/js --no-package-lock
//
// Without them they are skipped, unless POMELO_TEST_REQUIRE is "all" or a
// comma-separated list containing "node", which makes them fail instead.
package interop
