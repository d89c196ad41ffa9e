// Package testenv decides what a test does when something it needs from
// outside Go (node, Chromium, Redis, etcd) is missing: skip, or, when the
// environment variable POMELO_TEST_REQUIRE asks for that dependency, fail.
//
// POMELO_TEST_REQUIRE is "all" or a comma-separated list of dependency
// names ("node,chromium,redis,etcd"). CI sets it to "all", so that a run
// that silently skipped everything cannot pass.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Required reports whether POMELO_TEST_REQUIRE asks for dep.
func Required(dep string) bool {
	for _, v := range strings.Split(os.Getenv("POMELO_TEST_REQUIRE"), ",") {
		v = strings.TrimSpace(v)
		if v == "all" || v == dep {
			return true
		}
	}
	return false
}

// Missing skips the test because dep is missing, explaining how to get it,
// or fails it when dep is required.
func Missing(t testing.TB, dep, why string) {
	t.Helper()
	if Required(dep) {
		t.Fatalf("%s is required (POMELO_TEST_REQUIRE=%s) but missing: %s", dep, os.Getenv("POMELO_TEST_REQUIRE"), why)
	}
	t.Skipf("%s missing, skipping: %s (set POMELO_TEST_REQUIRE=%s to fail instead)", dep, why, dep)
}

// LookPath returns the path of the first of names found on the PATH, or
// calls Missing for dep.
func LookPath(t testing.TB, dep string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Missing(t, dep, "none of "+strings.Join(names, ", ")+" is on the PATH")
	return ""
}
