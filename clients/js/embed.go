// Package js is the project's JavaScript client, the npm package
// pomelo-go-client (see README.md in this directory), seen from Go: it embeds
// the package's ES module so that Go servers can serve it to browsers, as the
// chat example's page does, from the one source users install.
package js

import (
	"embed"
	"io/fs"
)

// ModuleFile is the name of the client's ES module in FS.
const ModuleFile = "pomelo-client.js"

//go:embed pomelo-client.js index.d.ts
var files embed.FS

// FS returns the package's files: the ES module (ModuleFile) and its
// TypeScript declarations, index.d.ts.
func FS() fs.FS { return files }
