package client_test

import (
	"bytes"
	"fmt"
	"os"
	goruntime "runtime"
	"testing"
	"time"
)

// TestMain fails the run if a goroutine of a Client outlives the tests: every test closes
// its clients, which must release them all.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := clientGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked client goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// clientGoroutines waits up to 2 s for the goroutines of the client package to end and
// returns the stacks of those left.
func clientGoroutines() string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:goruntime.Stack(buf, true)]
		var left [][]byte
		for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
			if bytes.Contains(g, []byte("runtime/client.(*Client)")) {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return string(bytes.Join(left, []byte("\n\n")))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
