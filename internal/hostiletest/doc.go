// Package hostiletest holds the framework's isolation load test: hostile
// clients (bad routes, bursts, oversized packages, clients that never read)
// beside well-behaved ones on a real loopback cluster. It has no code of its
// own; see hostile_test.go.
package hostiletest
