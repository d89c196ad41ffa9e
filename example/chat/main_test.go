package main

import (
	"os"
	"testing"

	"github.com/pomelo-go/pomelo/internal/testservers"
)

// TestMain removes the example's binary that the tests built, and stops the
// etcd and Redis that they share, when they end.
func TestMain(m *testing.M) {
	code := m.Run()
	removeBuilt()
	testservers.StopShared()
	os.Exit(code)
}
