package app_test

import (
	"testing"

	"github.com/pomelo-go/pomelo/internal/testservers"
)

// TestMain stops the etcd and Redis that the tests share when they end.
func TestMain(m *testing.M) { testservers.Main(m) }
