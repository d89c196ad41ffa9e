package testenv

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Ports below the kernel's ephemeral range (32768 and up by default on
// Linux), so that a port handed out here is not taken in the meantime by
// the source port of some outgoing connection.
const (
	lowPort  = 20000
	highPort = 32768
)

var (
	portsMu sync.Mutex
	given   = map[int]bool{} // never hand out a port twice in one binary
)

// FreePort returns a loopback port that nothing listened on a moment ago,
// for tests that must write a port into a file before a server binds it.
// Each call in a test binary returns a different port.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := lowPort + rand.IntN(highPort-lowPort)
		if given[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		given[p] = true
		return p
	}
	t.Fatal("testenv: no free loopback port found")
	return 0
}
