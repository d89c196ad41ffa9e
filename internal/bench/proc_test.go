package bench

import (
	"os"
	"testing"
)

func TestReadProcReadsCPUAndRSSOfAProcess(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.rssKB <= 0 || s.comm == "" || s.cpu < 0 {
		t.Fatalf("readProc(self) = %+v", s)
	}
}

func TestReadProcOfAMissingProcessFails(t *testing.T) {
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("readProc of a pid that does not exist succeeded")
	}
}
