// Package runtime is the pomelo-go framework: the application that hosts
// frontend and backend servers, the registries that generated code installs
// handlers, remotes and push routes into, sessions, errors and serializers.
//
// Focused subpackages hold the parts: wire (the Pomelo client protocol
// codec), connector (client connections), channel (channels and push),
// cluster (membership, server entries and route functions), client (a
// Go client for tests, bots and load tools) and testkit (a cluster of Apps in
// one process).
//
// Users rarely import more than this package and their own generated code:
// declare services in .proto files with the pomelo.v1 annotations, run buf
// generate, implement the generated interfaces and register them on an App.
package runtime
