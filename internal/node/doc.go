// Package node is a server's place in the cluster: it joins an
// internal/server Server to a membership (Join), serves the sys services
// and remotes on the RPC listener with shared-secret authentication,
// forwards client requests from frontends to backends over one batching
// stream per backend, runs backend sessions and session-close watches, and
// pushes across frontends.
//
// The package is internal: the App of the root package
// (github.com/pomelo-go/pomelo) joins its server with it, starts it after
// the server and closes it when Serve drains. What users choose about the
// cluster (membership, ServerInfo, route functions) is in runtime/cluster.
package node
